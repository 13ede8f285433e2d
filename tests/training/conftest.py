"""Fixtures for the training tests: a tiny RoBERTa, a learnable dataset, and a fast set of CLI flags.

Everything runs offline on CPU; the Hub code path stays the real one, it just gets local paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it at import

from training import train
from training.tiny_model import build_model, write_dataset

# Big enough that the tiny model learns within two epochs at a high learning rate, small enough to take seconds.
TRAIN_ROWS, VALIDATION_ROWS = 480, 60
REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_FLAGS = ("--global-batch-size", "32", "--learning-rate", "1e-2", "--no-compile")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny-data"), train=TRAIN_ROWS, validation=VALIDATION_ROWS)


@pytest.fixture
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
            "--epochs",
            "2",
            *FAST_FLAGS,
            *extra,
        ]

    return argv


@pytest.fixture
def run_training(train_argv: Callable[..., list[str]]) -> Callable[..., dict[str, Any]]:
    """Runs training in this process and returns metrics.json."""

    def run(output_dir: Path, *extra: str) -> dict[str, Any]:
        train.main(train_argv(output_dir, *extra))
        return json.loads((output_dir / "metrics.json").read_text())

    return run


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Offline, one thread per process (2 cores for 2 ranks), and the repository root importable."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
