#!/usr/bin/env bash
# Run HERE (the development machine), before `benchmarks/gpu_run.sh` on the GPU machine.
#
# The GPU machine is bare and offline: its python3 has CUDA torch but not this project's pinned
# transformers/tokenizers/datasets (datasets not at all), and ../shared does not travel with the repo.
# This puts both into ignored folders of the repo, to be sent with the run's `carry`:
#   .whl/          wheels of the pinned packages (from docker/requirements.txt) for Python 3.12 x86-64; accelerate
#                  too, whose data loader and compile plugin the lean-step configurations rely on
#   build/anchor/  the anchor scripts from ../shared/bench
set -euo pipefail
cd "$(dirname "$0")/.."

pin() { sed -n "s/^$1==//p" docker/requirements.txt; }
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }

rm -rf .whl && mkdir -p .whl build/anchor
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "transformers==$(pin transformers)" "tokenizers==$(pin tokenizers)" "datasets==$(pin datasets)" \
    "accelerate==$(pin accelerate)" "safetensors==$(pin safetensors)" \
    "dill==$(version dill)" "multiprocess==$(version multiprocess)"
# ../shared beside the main checkout; ../../shared from a worktree under wt/
bench=$(for dir in ../shared/bench ../../shared/bench; do [ -d "$dir" ] && echo "$dir" && break; done)
cp "${bench:?no ../shared/bench or ../../shared/bench}"/anchor_train_step.py "$bench"/anchor_trainer_sweep.py build/anchor/
du -sh .whl build/anchor
echo 'ready: run benchmarks/gpu_run.sh on the GPU machine with carry [".whl", "build/anchor"]'
