"""End-to-end training runs of the tiny model on CPU: learn, save, resume, compile, DDP over two processes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training.arguments import parse_args
from training.tiny_model import LABELS, make_texts
from training.train import build_trainer

METRIC_KEYS = {"eval_loss", "eval_recall", "eval_accuracy", "train_runtime", "train_samples_per_second", "epoch"}
STEPS_PER_EPOCH = 15  # 480 rows / global batch 32


def epoch_logs(output_dir: Path, key: str) -> list[float]:
    """One value of `key` per epoch, from the trainer state of the newest checkpoint."""
    checkpoints = sorted((output_dir / "checkpoints").glob("checkpoint-*"), key=lambda path: int(path.name[11:]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [entry[key] for entry in state["log_history"] if key in entry]


def predict(model_dir: Path, texts: list[str]) -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    return [model.config.id2label[index] for index in logits.argmax(-1).tolist()]


def assert_saved_model_predicts(model_dir: Path, minimum_accuracy: float) -> None:
    rows = make_texts(60, seed=7)
    predicted = predict(model_dir, [text for text, _ in rows])
    correct = sum(label == LABELS[expected] for label, (_, expected) in zip(predicted, rows, strict=True))
    assert correct / len(rows) >= minimum_accuracy


def test_two_epochs_learn_and_save_a_loadable_model(
    tmp_path: Path, run_training: Callable[..., dict[str, Any]]
) -> None:
    metrics = run_training(tmp_path)
    assert metrics.keys() >= METRIC_KEYS
    assert metrics["epoch"] == 2
    train_losses, eval_losses = epoch_logs(tmp_path, "loss"), epoch_logs(tmp_path, "eval_loss")
    assert train_losses[1] < train_losses[0] < math.log(3) + 0.1  # starts near chance, then falls
    assert eval_losses[1] < eval_losses[0]
    assert metrics["eval_recall"] > 0.6
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-15", "checkpoint-30"]
    setup = metrics["setup"]
    assert (setup["bf16"], setup["optim"], setup["torch_compile"]) == (True, "adamw_torch_fused", False)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").config.id2label == dict(
        enumerate(LABELS)
    )
    assert_saved_model_predicts(tmp_path / "model", minimum_accuracy=0.6)


def test_recipe_flags_build_bf16_and_fused_adamw(tmp_path: Path, train_argv: Callable[..., list[str]]) -> None:
    trainer = build_trainer(parse_args(train_argv(tmp_path)))
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["fused"]
    assert trainer.accelerator.mixed_precision == "bf16"  # accelerate wraps forward in bf16 autocast


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's own
def test_compiled_run_saves_a_plain_model(tmp_path: Path, run_training: Callable[..., dict[str, Any]]) -> None:
    """torch.compile wraps the model; what is saved must still load without the wrapper's key prefix."""
    metrics = run_training(tmp_path, "--compile", "--epochs", "1")
    assert metrics["setup"]["torch_compile"]
    assert_saved_model_predicts(tmp_path / "model", minimum_accuracy=0.4)


def test_restart_resumes_from_the_newest_checkpoint(
    tmp_path: Path, run_training: Callable[..., dict[str, Any]]
) -> None:
    first = run_training(tmp_path, "--epochs", "1")
    assert first["setup"]["resumed_from"] is None
    (tmp_path / "checkpoints" / "checkpoint-16").mkdir()  # cut off mid-save: no trainer_state.json
    second = run_training(tmp_path, "--epochs", "2")
    assert second["setup"]["resumed_from"] == str(tmp_path / "checkpoints" / f"checkpoint-{STEPS_PER_EPOCH}")
    assert second["epoch"] == 2
    eval_losses = epoch_logs(tmp_path, "eval_loss")
    assert len(eval_losses) == 2
    assert eval_losses[0] == first["eval_loss"]  # epoch 1 is the first run's, carried over, not redone


def test_no_resume_starts_over(tmp_path: Path, run_training: Callable[..., dict[str, Any]]) -> None:
    run_training(tmp_path, "--epochs", "1", "--max-steps", "2")
    again = run_training(tmp_path, "--epochs", "1", "--max-steps", "2", "--no-resume")
    assert again["setup"]["resumed_from"] is None


@pytest.mark.slow
def test_torchrun_two_processes_train_and_save_once(
    tmp_path: Path, train_argv: Callable[..., list[str]], subprocess_env: dict[str, str]
) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "training.train"]
    result = subprocess.run(
        [*command, *train_argv(tmp_path)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["setup"]["processes"] == 2
    assert metrics["setup"]["per_device_batch_size"] == 16  # global 32 split over two ranks
    assert (result.stdout + result.stderr).count("saved model to") == 1
    # A mean cross-entropy over 3 classes starts at ln 3 and falls; Trainer's loss scaling for models
    # that take **kwargs would report (and step on) twice that with two processes.
    assert metrics["train_loss"] < math.log(3)
    assert_saved_model_predicts(tmp_path / "model", minimum_accuracy=0.5)
