"""Fixtures for the training tests: a tiny RoBERTa, a learnable dataset, a fast set of CLI flags, one
shared two-epoch run, and a hub cache holding the tiny model under a hub id.

Everything runs offline on CPU; the hub code path stays the real one: it gets local paths, or the
hub cache that huggingface_hub reads when HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it at import

from huggingface_hub import constants

from training import train
from training.tiny_model import build_model, write_dataset

# Big enough that the tiny model learns within two epochs at a high learning rate, small enough to take seconds.
TRAIN_ROWS, VALIDATION_ROWS, TEST_ROWS = 480, 60, 120
REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_FLAGS = ("--global-batch-size", "32", "--learning-rate", "1e-2", "--no-compile")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(
        tmp_path_factory.mktemp("tiny-data"), train=TRAIN_ROWS, validation=VALIDATION_ROWS, test=TEST_ROWS
    )


@pytest.fixture(scope="session")
def train_argv(tiny_model: Path, tiny_data: Path) -> Callable[..., list[str]]:
    """CLI arguments for a fast run on the tiny model and data; extra flags are appended (last one wins)."""

    def argv(output_dir: Path, *extra: str) -> list[str]:
        return [
            "--output-dir",
            str(output_dir),
            "--model-name",
            str(tiny_model),
            "--train-file",
            str(tiny_data / "train.csv"),
            "--validation-file",
            str(tiny_data / "validation.csv"),
            "--test-file",
            str(tiny_data / "test.csv"),
            "--epochs",
            "2",
            *FAST_FLAGS,
            *extra,
        ]

    return argv


@pytest.fixture(scope="session")
def run_training(train_argv: Callable[..., list[str]]) -> Callable[..., dict[str, Any]]:
    """Runs training in this process and returns metrics.json."""

    def run(output_dir: Path, *extra: str) -> dict[str, Any]:
        train.main(train_argv(output_dir, *extra))
        return json.loads((output_dir / "metrics.json").read_text())

    return run


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, run_training: Callable[..., dict[str, Any]]) -> Path:
    """One two-epoch run (checkpoint-15 and checkpoint-30, model/, metrics.json) for the tests that only
    read it; a test that changes anything copies it first."""
    output = tmp_path_factory.mktemp("trained")
    run_training(output)
    return output


@dataclass
class FakeHub:
    """A hub cache holding the tiny model as `REPO_ID` at two commits; `main` points at the first."""

    cache: Path
    REPO_ID = "tiny-org/tiny-roberta"
    FIRST, SECOND = "1" * 40, "2" * 40

    @property
    def repo(self) -> Path:
        return self.cache / f"models--{self.REPO_ID.replace('/', '--')}"

    def move_main(self, commit: str) -> None:
        """What a new upstream commit does to the branch a run asked for."""
        (self.repo / "refs" / "main").write_text(commit)


@pytest.fixture
def fake_hub(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    hub = FakeHub(tmp_path / "hub-cache")
    for commit in (FakeHub.FIRST, FakeHub.SECOND):
        shutil.copytree(tiny_model, hub.repo / "snapshots" / commit)
    (hub.repo / "refs").mkdir()
    hub.move_main(FakeHub.FIRST)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub.cache))  # read at call time by hub and transformers
    return hub


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Offline, one thread per process (2 cores for 2 ranks), and the repository root importable."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
