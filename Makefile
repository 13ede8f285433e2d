# One entry point for people and CI. `make demo` and `make test` install what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
CDK := npx --no-install cdk
PORT ?= 8080

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install synth demo test e2e-local lint typecheck deploy destroy serve package lock bench-train bench-serve clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt docker/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

/usr/bin/shellcheck:
	apt-get update -qq && apt-get install -y -qq shellcheck

# docker-init, what `docker run --init` starts, is tini: the bootstrap tests run the real thing.
/usr/bin/tini:
	apt-get update -qq && apt-get install -y -qq tini

install: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed /usr/bin/shellcheck /usr/bin/tini ## Install everything the targets need

synth: $(VENV)/.installed node_modules/.installed ## Synthesize the three templates into cdk.out (offline, no credentials)
	$(CDK) synth --quiet

demo: $(VENV)/.installed node_modules/.installed ## Synth, then train a tiny model on CPU, package, serve and invoke it; print a summary
	@$(PY) -m scripts.demo $(if $(MODEL),--model $(MODEL))

test: install lint typecheck ## Lint, type-check and run every test (offline; one test file per core)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest --numprocesses auto --dist loadfile

e2e-local: $(VENV)/.installed node_modules/.installed ## cdk deploy, the instance's user data, serving and cdk destroy against an AWS emulator (offline)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests/e2e

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy .

deploy: $(VENV)/.installed node_modules/.installed ## Deploy all stacks (settings: CONTEXT="-c key=value ..."); keepInstanceOnFailure adds --no-rollback
	@options=$$($(PY) -m scripts.deploy_options $(CONTEXT)) && $(CDK) deploy --all $(CONTEXT) $$options

destroy: $(VENV)/.installed node_modules/.installed ## Remove every stack (the artifact bucket stays unless deleteBucketOnDestroy=true)
	$(CDK) destroy --all

serve: $(VENV)/.installed ## Serve MODEL=model.tar.gz (default: the demo's) on 127.0.0.1:$(PORT) with the real SageMaker toolkit
	$(PY) -m inference.serve --model $(or $(MODEL),build/demo/model.tar.gz) --port $(PORT)

package: $(VENV)/.installed ## Build the deployable archive of MODEL=<model dir> (wheels included) into build/model.tar.gz
	@test -n "$(MODEL)" || { echo "error: give the model directory: make package MODEL=<dir>" >&2; exit 2; }
	@$(PY) -m training.package --model-dir $(MODEL) --output $(or $(OUTPUT),build/model.tar.gz) \
		--wheels build/wheels/endpoint --download

lock: $(VENV)/.installed ## Re-resolve inference/requirements.txt into inference/requirements.lock (after changing a pin)
	$(PY) -m training.wheels lock

bench-train: $(VENV)/.installed ## Training throughput: the recipe against the project's default (JSON + PNG chart)
	$(PY) -m benchmarks.train
	$(PY) -m benchmarks.charts build/bench-train.json

bench-serve: $(VENV)/.installed ## Endpoint latency through the local real-toolkit server (JSON + PNG chart)
	$(PY) -m benchmarks.serve
	$(PY) -m benchmarks.charts build/bench-serve.json

clean: ## Remove build outputs (keeps the venvs)
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache
