"""`make demo`'s pipeline end to end, so it cannot rot: train -> package -> serve -> invoke -> stop."""

from __future__ import annotations

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


@pytest.mark.slow
def test_demo_prints_the_endpoint_reply_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "scripts.demo", "--workdir", str(tmp_path), "--port", str(free_port())]
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    reply = json.loads(lines[lines.index("==> stop the server") - 1])
    assert reply["sentiment"] in LABELS
    (scores,) = [line.strip() for line in lines if line.startswith("    macro recall: validation ")]
    assert re.fullmatch(
        r"macro recall: validation [01]\.\d{3} \(picked the checkpoint\), test [01]\.\d{3} \(held out\)", scores
    )
    assert (tmp_path / "model.tar.gz").is_file()
