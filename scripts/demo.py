"""The whole pipeline on this machine, offline, in about a minute (`make demo`).

    python -m scripts.demo                        # tiny RoBERTa made here, trained on generated tweets
    python -m scripts.demo --model roberta-base   # a few fine-tuning steps of a hub checkpoint instead

Generate data -> train on CPU (`python -m training.train`) -> package model.tar.gz as the endpoint
gets it, less the endpoint's aarch64 wheels (this venv has those packages; `make package` adds them)
-> serve it with the real SageMaker PyTorch serving stack on 127.0.0.1 -> send the recipe's sentence
through the predict client's local path -> print the reply -> stop the server.
Everything lands in --workdir (default build/demo), rebuilt on every run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inference.predict import invoke_local
from inference.serve import DEFAULT_PORT, LocalEndpoint
from training.package import build_model_archive
from training.tiny_model import build_model, write_dataset

SENTENCE = "Covid cases are increasing fast!"
CODE_DIR = Path(__file__).resolve().parent.parent / "inference"
# A tiny model from scratch needs a high learning rate and small batches to learn in two epochs;
# a pretrained checkpoint gets the recipe's learning rate and only a few steps.
TINY_TRAINING = ["--epochs", "2", "--global-batch-size", "16", "--learning-rate", "2e-3"]
HUB_TRAINING = ["--epochs", "1", "--max-steps", "5", "--global-batch-size", "16"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or directory to fine-tune instead of the tiny model")
    parser.add_argument("--workdir", type=Path, default=Path("build/demo"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)

    with step("generate tweets"):
        data = write_dataset(work / "data", train=960, validation=60)
    if args.model:
        base, schedule = args.model, HUB_TRAINING
    else:
        with step("build a tiny RoBERTa"):
            base, schedule = str(build_model(work / "tiny-roberta")), TINY_TRAINING
    with step(f"train {base} on CPU"):
        train(base, data, work / "train", schedule)
    with step("package model.tar.gz"):
        archive = build_model_archive(work / "train" / "model", CODE_DIR, work / "model.tar.gz")
    with step(f"serve on 127.0.0.1:{args.port}"), (work / "server.log").open("w") as log:
        endpoint = LocalEndpoint(archive, args.port, log=log)
        endpoint.start()
    try:
        with step(f"invoke with {SENTENCE!r}"):
            reply = invoke_local(endpoint.url, SENTENCE, "application/x-text", "application/json")
        print(reply, flush=True)
    finally:
        with step("stop the server"):
            endpoint.stop()
    return 0


def train(base: str, data: Path, output: Path, schedule: list[str]) -> None:
    """Through the CLI, as the training instance runs it; CPU has neither compile nor bf16 worth it."""
    command = [
        *(sys.executable, "-m", "training.train", "--output-dir", str(output), "--model-name", base),
        *("--train-file", str(data / "train.csv"), "--validation-file", str(data / "validation.csv")),
        *("--no-compile", "--no-bf16", *schedule),
    ]
    subprocess.run(command, check=True)


@contextmanager
def step(what: str) -> Iterator[None]:
    print(f"==> {what}", flush=True)
    started = time.monotonic()
    yield
    print(f"    {what}: {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
