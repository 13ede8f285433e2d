"""End-to-end training runs of the tiny model on CPU: learn, score the held-out split, save, resume
(falling back past a broken checkpoint), pin hub commits, compile, DDP over two processes."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.utils import DynamoBackend
from sklearn.metrics import recall_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.training.conftest import FakeHub
from training.arguments import parse_args
from training.checkpoints import resumable_checkpoint
from training.tiny_model import LABELS, make_texts
from training.train import build_job, main, setup_summary

METRIC_KEYS = {"eval_loss", "eval_recall", "eval_accuracy", "train_runtime", "train_samples_per_second", "epoch"}
TEST_METRIC_KEYS = {"test_loss", "test_recall", "test_accuracy"}
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


def test_two_epochs_learn_and_save_a_loadable_model(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics.keys() >= METRIC_KEYS | TEST_METRIC_KEYS
    assert metrics["epoch"] == 2
    train_losses, eval_losses = epoch_logs(trained, "loss"), epoch_logs(trained, "eval_loss")
    assert train_losses[1] < train_losses[0] < math.log(3) + 0.1  # starts near chance, then falls
    assert eval_losses[1] < eval_losses[0]
    assert metrics["eval_recall"] > 0.6
    assert sorted(path.name for path in (trained / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-15",
        "checkpoint-30",
    ]
    setup = metrics["setup"]
    assert (setup["bf16"], setup["optim"], setup["torch_compile"]) == (True, "adamw_torch_fused", False)
    assert (setup["model_revision"], setup["dataset"], setup["dataset_revision"]) == (None, "files", None)
    assert AutoModelForSequenceClassification.from_pretrained(trained / "model").config.id2label == dict(
        enumerate(LABELS)
    )
    assert_saved_model_predicts(trained / "model", minimum_accuracy=0.6)


def test_test_score_is_the_saved_models_score_on_the_held_out_split(trained: Path, tiny_data: Path) -> None:
    """Scored once, after validation chose the model: the same figure the saved model gets on test.csv."""
    metrics = json.loads((trained / "metrics.json").read_text())
    with (tiny_data / "test.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    predicted = predict(trained / "model", [row["text"] for row in rows])
    recall = recall_score([LABELS[int(row["label"])] for row in rows], predicted, average="macro")
    assert metrics["test_recall"] == pytest.approx(recall, abs=0.02)  # evaluation ran in bf16, this in fp32
    assert metrics["test_recall"] > 0.6
    assert metrics["test_loss"] != metrics["eval_loss"]  # another split, not validation scored twice


def test_recipe_flags_build_bf16_and_fused_adamw(tmp_path: Path, train_argv: Callable[..., list[str]]) -> None:
    trainer = build_job(parse_args(train_argv(tmp_path))).trainer
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["fused"]
    assert trainer.accelerator.mixed_precision == "bf16"  # accelerate wraps forward in bf16 autocast


def test_lean_step_flags_reach_the_trainer(tmp_path: Path, train_argv: Callable[..., list[str]]) -> None:
    """The benchmark's configuration (5) through the project's own flags: what Trainer and accelerate get."""
    lean = ("--pad-to-multiple-of", "32", "--dataloader-workers", "2", "--run-ahead", "--compile")
    trainer = build_job(parse_args(train_argv(tmp_path, *lean, "--compile-mode", "reduce-overhead"))).trainer
    assert trainer.accelerator.state.dynamo_plugin.mode == "reduce-overhead"  # what torch.compile is called with
    assert (trainer.args.dataloader_num_workers, trainer.args.dataloader_persistent_workers) == (2, True)
    assert not trainer.args.logging_nan_inf_filter  # no per-step read of the loss
    widths = {batch["input_ids"].shape[1] for batch in trainer.get_train_dataloader()}  # collated by the workers
    assert widths and all(width % 32 == 0 for width in widths)
    default = build_job(parse_args(train_argv(tmp_path / "default", "--compile"))).trainer
    assert default.accelerator.state.dynamo_plugin.mode == "default"
    setups = [setup_summary(job, None) for job in (trainer, default)]
    lean_keys = ("torch_compile_mode", "pad_to_multiple_of", "dataloader_workers", "run_ahead")
    assert [[setup[key] for key in lean_keys] for setup in setups] == [
        ["reduce-overhead", 32, 2, True],
        ["default", 8, 0, False],
    ]


def test_cudagraphs_mode_compiles_with_the_cudagraphs_backend(
    tmp_path: Path, train_argv: Callable[..., list[str]]
) -> None:
    trainer = build_job(parse_args(train_argv(tmp_path, "--compile", "--compile-mode", "cudagraphs"))).trainer
    assert trainer.accelerator.state.dynamo_plugin.backend == DynamoBackend.CUDAGRAPHS
    assert trainer.accelerator.state.dynamo_plugin.mode == "default"  # the backend takes no inductor mode


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's own
def test_lean_step_run_trains_and_saves_a_plain_model(
    tmp_path: Path, run_training: Callable[..., dict[str, Any]]
) -> None:
    """Configuration (6) end to end on CPU: dynamo and AOTAutograd trace the model for the cudagraphs backend
    (which replays eagerly on CPU), workers collate 32-token buckets, and the host runs ahead."""
    lean = ("--pad-to-multiple-of", "32", "--dataloader-workers", "2", "--run-ahead")
    metrics = run_training(tmp_path, *lean, "--compile", "--compile-mode", "cudagraphs", "--epochs", "1")
    assert metrics["setup"]["torch_compile_backend"] == "cudagraphs"
    assert_saved_model_predicts(tmp_path / "model", minimum_accuracy=0.4)


def test_cuda_graph_modes_refuse_gradient_accumulation_before_loading_anything(
    tmp_path: Path, train_argv: Callable[..., list[str]]
) -> None:
    argv = train_argv(tmp_path, "--compile", "--compile-mode", "cudagraphs", "--max-device-batch-size", "16")
    with pytest.raises(SystemExit, match=r"^error: --compile-mode cudagraphs replays CUDA graphs, which cannot accum"):
        main(argv)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's own
def test_compiled_run_saves_a_plain_model(tmp_path: Path, run_training: Callable[..., dict[str, Any]]) -> None:
    """torch.compile wraps the model; what is saved must still load without the wrapper's key prefix."""
    metrics = run_training(tmp_path, "--compile", "--epochs", "1")
    assert metrics["setup"]["torch_compile"]
    assert_saved_model_predicts(tmp_path / "model", minimum_accuracy=0.4)


def test_restart_passes_over_a_cut_off_checkpoint_and_resumes_from_the_one_before(
    tmp_path: Path, trained: Path, run_training: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """An unclean reboot cut the newest checkpoint's weights short: resume from the previous one, say so."""
    shutil.copytree(trained / "checkpoints", tmp_path / "checkpoints")
    weights = tmp_path / "checkpoints" / "checkpoint-30" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with caplog.at_level(logging.WARNING, logger="training"):
        metrics = run_training(tmp_path)
    assert metrics["setup"]["resumed_from"] == str(tmp_path / "checkpoints" / f"checkpoint-{STEPS_PER_EPOCH}")
    assert "not resuming from checkpoint-30: weights model.safetensors do not open" in caplog.text
    assert metrics["epoch"] == 2
    # Epoch 1 is carried over, not redone; epoch 2 is retrained from the same state, RNG included.
    assert epoch_logs(tmp_path, "eval_loss") == epoch_logs(trained, "eval_loss")


def test_hub_model_is_pinned_at_the_first_start_and_a_restart_keeps_that_commit(
    tmp_path: Path, fake_hub: FakeHub, run_training: Callable[..., dict[str, Any]]
) -> None:
    hub_model = ("--model-name", FakeHub.REPO_ID, "--epochs", "1", "--max-steps", "2")
    first = run_training(tmp_path, *hub_model)
    assert (first["setup"]["model"], first["setup"]["model_revision"]) == (FakeHub.REPO_ID, FakeHub.FIRST)
    assert first["setup"]["resumed_from"] is None
    fake_hub.move_main(FakeHub.SECOND)  # upstream moves on while the run is interrupted
    resumed = run_training(tmp_path, *hub_model)
    assert resumed["setup"]["resumed_from"] == str(tmp_path / "checkpoints" / "checkpoint-2")
    assert resumed["setup"]["model_revision"] == FakeHub.FIRST
    again = run_training(tmp_path, *hub_model, "--no-resume")
    assert again["setup"]["resumed_from"] is None
    assert again["setup"]["model_revision"] == FakeHub.SECOND


@pytest.mark.slow
def test_torchrun_two_processes_train_and_save_once(
    tmp_path: Path, train_argv: Callable[..., list[str]], subprocess_env: dict[str, str]
) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training.train",
    ]
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
    assert metrics.keys() >= TEST_METRIC_KEYS
    assert metrics["setup"]["processes"] == 2
    assert metrics["setup"]["per_device_batch_size"] == 16  # global 32 split over two ranks
    assert (result.stdout + result.stderr).count("saved model to") == 1
    # A mean cross-entropy over 3 classes starts at ln 3 and falls; Trainer's loss scaling for models
    # that take **kwargs would report (and step on) twice that with two processes.
    assert metrics["train_loss"] < math.log(3)
    assert_saved_model_predicts(tmp_path / "model", minimum_accuracy=0.5)
    # Each rank saved its own RNG state, under the names a restart of two processes checks for.
    newest = tmp_path / "checkpoints" / f"checkpoint-{2 * STEPS_PER_EPOCH}"
    assert resumable_checkpoint(tmp_path / "checkpoints", world_size=2) == str(newest)
