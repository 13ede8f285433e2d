"""`make demo` end to end, so it cannot rot: synth -> train -> package -> serve -> invoke -> stop -> summary,
one terminal line per step, the libraries' output in the step logs, and a failing step named with its log."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inference.serve import free_port
from training.tiny_model import LABELS

REPO = Path(__file__).resolve().parents[2]
STEPS = [
    "synthesize the stacks (npx cdk synth)",
    "generate tweets",
    "build a tiny RoBERTa",
    "train on CPU (python -m training.train)",
    "package model.tar.gz",
    "start the endpoint on 127.0.0.1:",
    "invoke it with the recipe's sentence",
    "stop the endpoint",
]
STEP_LINE = re.compile(r"^  (\S.*?)\s+(\d+\.\d) s$")


def run_demo(workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "scripts.demo", "--workdir", str(workdir), "--port", str(free_port()), *extra]
    return subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_demo_prints_one_line_per_step_then_the_summary(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = run_demo(workdir, "--cdk-out", str(tmp_path / "cdk.out"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    steps = [match.group(1) for match in map(STEP_LINE.match, lines) if match]
    assert [step.rsplit(":", 1)[0] + ":" if "127.0.0.1" in step else step for step in steps] == STEPS

    text = result.stdout
    for stack in ("pt2-foundation", "pt2-training", "pt2-inference"):
        assert re.search(rf"^  {stack} \(\d+ resources\): ", text, re.MULTILINE), stack
    assert re.search(r"^\s+5  AWS::CloudWatch::Alarm$", text, re.MULTILINE)
    metrics = json.loads((workdir / "train" / "metrics.json").read_text())
    assert {"eval_recall", "test_recall"} <= set(metrics)  # validation picked the model; test is held out
    assert metrics["test_recall"] >= 0.9  # the tiny model learns the generated task (it fell to 0.66 once)
    for key in [key for key in metrics if key.startswith(("eval_", "test_"))]:
        assert re.search(rf"^  {key}\s+{metrics[key]:.4f}$", text, re.MULTILINE), key
    archive = workdir / "model.tar.gz"
    assert f"sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()}" in text
    (answer,) = [line for line in lines if line.startswith("Endpoint answer for 'Covid cases are increasing fast!': ")]
    assert json.loads(answer.split(": ", 1)[1])["sentiment"] in LABELS
    assert re.search(r"^Total: \d+\.\d s$", lines[-1])

    # The progress bars and the server's log are in the step logs, not on the terminal.
    assert "it/s]" not in text and "examples/s]" not in text
    assert "examples/s]" in (workdir / "logs" / "train.log").read_text()
    assert "Model server started" in (workdir / "logs" / "serve.log").read_text()


@pytest.mark.slow
def test_a_failing_step_is_named_with_its_log(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = run_demo(workdir, "--no-synth", "--model", str(tmp_path / "no-such-model"))
    assert result.returncode == 1
    train_log = workdir / "logs" / "train.log"
    assert result.stdout.splitlines()[-1] == (
        f"demo failed at step 'train on CPU (python -m training.train)'; its log: {train_log}"
    )
    assert "CalledProcessError" in train_log.read_text()
    assert "Traceback" not in result.stdout + result.stderr
