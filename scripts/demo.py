"""The whole pipeline on this machine, offline, in about a minute (`make demo`).

    python -m scripts.demo                        # tiny RoBERTa made here, trained on generated tweets
    python -m scripts.demo --model roberta-base   # a few fine-tuning steps of a hub checkpoint instead

Synthesize the stacks -> generate data -> train on CPU (`python -m training.train`) -> package
model.tar.gz as the endpoint gets it, less the endpoint's aarch64 wheels (this venv has those packages;
`make package` adds them) -> serve it with the real SageMaker PyTorch serving stack on 127.0.0.1 ->
send the recipe's sentence through the predict client's local path -> stop the server -> print a
summary. The terminal shows one line per step with its time; each step's output (progress bars,
warnings, the server's log) goes to <workdir>/logs/<step>.log. On a failure it names the step and its
log and exits 1. Everything lands in --workdir (default build/demo), rebuilt every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from inference.predict import invoke_local
from inference.serve import DEFAULT_PORT, LocalEndpoint
from scripts.stack_summary import stack_summary
from scripts.steps import StepError, Steps
from training.package import build_model_archive
from training.tiny_model import build_model, write_dataset

SENTENCE = "Covid cases are increasing fast!"
REPO = Path(__file__).resolve().parent.parent
CODE_DIR = REPO / "inference"
# A tiny model from scratch needs a high learning rate and small batches to learn in three epochs (its
# 400-token vocabulary splits the class words; 2e-3 stopped at recall 0.66); a pretrained checkpoint gets
# the recipe's learning rate and only a few steps.
TINY_TRAINING = ["--epochs", "3", "--global-batch-size", "16", "--learning-rate", "1e-2"]
HUB_TRAINING = ["--epochs", "1", "--max-steps", "5", "--global-batch-size", "16"]
TRAIN_ROWS, VALIDATION_ROWS, TEST_ROWS = 960, 60, 240
# metrics.json keys worth showing: the evaluation of the saved model (eval_*), a test split's if any (test_*).
METRIC_PREFIXES = ("eval_", "test_")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    steps = Steps(args.workdir / "logs")
    print(f"make demo: one line per step; their output goes to {steps.logs}/", flush=True)
    try:
        reply = pipeline(args, steps)
    except StepError as failure:
        print(f"demo failed at step '{failure.title}'; its log: {failure.log}", flush=True)
        return 1
    print_summary(args, reply, steps.elapsed)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or directory to fine-tune instead of the tiny model")
    parser.add_argument("--workdir", type=Path, default=Path("build/demo"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"), help="where the templates are synthesized")
    parser.add_argument("--no-synth", action="store_true", help="summarize the templates already in --cdk-out")
    return parser.parse_args(argv)


def pipeline(args: argparse.Namespace, steps: Steps) -> str:
    """Runs every step; returns the endpoint's answer for the recipe's sentence."""
    work = args.workdir
    if not args.no_synth:
        with steps.run("synthesize the stacks (npx cdk synth)", "synth"):
            synthesize(args.cdk_out)
    with steps.run("generate tweets", "data"):
        data = write_dataset(work / "data", train=TRAIN_ROWS, validation=VALIDATION_ROWS, test=TEST_ROWS)
    if args.model:
        base, schedule = args.model, HUB_TRAINING
    else:
        with steps.run("build a tiny RoBERTa", "tiny-model"):
            base, schedule = str(build_model(work / "tiny-roberta")), TINY_TRAINING
    with steps.run("train on CPU (python -m training.train)", "train"):
        train(base, data, work / "train", schedule)
    with steps.run("package model.tar.gz", "package"):
        archive = build_model_archive(work / "train" / "model", CODE_DIR, work / "model.tar.gz")
    with ExitStack() as cleanup:
        server_log = cleanup.enter_context(steps.log("serve").open("w"))
        endpoint = LocalEndpoint(archive, args.port, log=server_log)
        with steps.run(f"start the endpoint on 127.0.0.1:{args.port}", "serve"):
            endpoint.start()
        cleanup.callback(stop, steps, endpoint)
        with steps.run("invoke it with the recipe's sentence", "invoke"):
            reply = invoke_local(endpoint.url, SENTENCE, "application/x-text", "application/json")
    return reply


def stop(steps: Steps, endpoint: LocalEndpoint) -> None:
    with steps.run("stop the endpoint", "stop"):
        endpoint.stop()


def synthesize(cdk_out: Path) -> None:
    """The real CDK CLI, as `make synth` runs it (offline, no credentials)."""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    command = ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(cdk_out)]
    subprocess.run(command, check=True, cwd=REPO, env=env)


def train(base: str, data: Path, output: Path, schedule: list[str]) -> None:
    """Through the CLI, as the training instance runs it; CPU has neither compile nor bf16 worth it."""
    command = [
        *(sys.executable, "-m", "training.train", "--output-dir", str(output), "--model-name", base),
        *("--train-file", str(data / "train.csv"), "--validation-file", str(data / "validation.csv")),
        *("--test-file", str(data / "test.csv")),
        *("--no-compile", "--no-bf16", *schedule),
    ]
    subprocess.run(command, check=True)


def print_summary(args: argparse.Namespace, reply: str, elapsed: float) -> None:
    archive = args.workdir / "model.tar.gz"
    metrics = json.loads((args.workdir / "train" / "metrics.json").read_text())
    shown = {key: value for key, value in sorted(metrics.items()) if key.startswith(METRIC_PREFIXES)}
    model = args.model or "the tiny model"
    print("\nWhat `cdk deploy` would create (from the synthesized templates):")
    print("\n".join(f"  {line}" for line in stack_summary(args.cdk_out)))
    print(
        f"\nEvaluation of {model} (metrics.json): eval_* on {VALIDATION_ROWS} generated validation tweets, which "
        f"picked the checkpoint; test_* on {TEST_ROWS} held-out ones, the score to compare"
    )
    print("\n".join(f"  {key:<28} {value:.4f}" for key, value in shown.items()))
    size_mb = archive.stat().st_size / 1e6
    print(f"\nmodel.tar.gz: {size_mb:.1f} MB, sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()}")
    print(f"Endpoint answer for {SENTENCE!r}: {reply}")
    print(f"Total: {elapsed:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
