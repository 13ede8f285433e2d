"""The global batch stays the same whatever the process count: the rule and the TrainingArguments it feeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.arguments import parse_args
from training.batching import BatchPlan, BatchPlanError, plan_batches, process_count
from training.train import training_arguments


@pytest.mark.parametrize(
    ("global_batch", "processes", "max_per_device", "expected"),
    [
        (128, 8, None, BatchPlan(per_device=16, accumulation=1, processes=8)),  # the recipe: 16 x 8 GPUs
        (128, 1, None, BatchPlan(per_device=128, accumulation=1, processes=1)),
        (128, 4, None, BatchPlan(per_device=32, accumulation=1, processes=4)),
        (128, 1, 32, BatchPlan(per_device=32, accumulation=4, processes=1)),
        (128, 8, 5, BatchPlan(per_device=4, accumulation=4, processes=8)),
        (96, 1, 40, BatchPlan(per_device=32, accumulation=3, processes=1)),  # fewest equal micro-batches
        (7, 1, 2, BatchPlan(per_device=1, accumulation=7, processes=1)),  # a prime share: batches of one
    ],
)
def test_plan_keeps_the_global_batch(
    global_batch: int, processes: int, max_per_device: int | None, expected: BatchPlan
) -> None:
    plan = plan_batches(global_batch, processes, max_per_device)
    assert plan == expected
    assert plan.global_batch == global_batch


def test_plan_refuses_a_batch_that_does_not_split_evenly() -> None:
    with pytest.raises(BatchPlanError, match="global batch 128 does not split evenly over 3 processes"):
        plan_batches(128, 3)


def test_process_count_follows_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert process_count() == 8
    monkeypatch.delenv("WORLD_SIZE")
    assert process_count() == 1  # no torchrun, no GPU


def test_training_arguments_are_the_recipe_on_eight_gpus(tmp_path: Path) -> None:
    args = training_arguments(parse_args(["--output-dir", str(tmp_path)]), world_size=8)
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (16, 16)
    assert args.gradient_accumulation_steps == 1
    assert (args.num_train_epochs, args.learning_rate) == (10, 1e-5)
    assert (args.eval_strategy, args.save_strategy, args.logging_strategy) == ("epoch", "epoch", "epoch")
    assert args.load_best_model_at_end
    assert (args.metric_for_best_model, args.greater_is_better) == ("recall", True)
    assert args.bf16
    assert args.torch_compile
    assert args.optim == "adamw_torch_fused"
    assert args.train_sampling_strategy == "group_by_length"
    assert args.output_dir == str(tmp_path / "checkpoints")


def test_pad_to_max_length_samples_like_the_recipe(tmp_path: Path) -> None:
    argv = ["--output-dir", str(tmp_path), "--pad-to-max-length", "--no-compile", "--no-bf16", "--optim", "adamw_torch"]
    args = training_arguments(parse_args(argv), world_size=1)
    assert args.train_sampling_strategy == "random"
    assert not args.torch_compile
    assert not args.bf16
    assert args.optim == "adamw_torch"
    assert args.per_device_train_batch_size == 128
