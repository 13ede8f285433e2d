"""training.train's command line: the parser the CDK app also runs at synth on the trainArgs setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments

from training.arguments import DEFAULT_LABELS, OPTIMIZERS, ArgumentsError, check_user_flags, parse_args

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("optim", OPTIMIZERS)
def test_every_allowed_optimizer_is_one_trainer_builds_without_extra_packages(optim: str, tmp_path: Path) -> None:
    arguments = TrainingArguments(output_dir=str(tmp_path), optim=optim, use_cpu=True, report_to="none")
    optimizer_class, _ = Trainer.get_optimizer_cls_and_kwargs(arguments)
    assert issubclass(optimizer_class, torch.optim.Optimizer)


def test_a_bad_command_line_exits_with_one_error_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"^error: unrecognized argument --epoch \(did you mean --epochs\?\)$"):
        parse_args(["--output-dir", str(tmp_path), "--epoch", "3"])


def test_the_parser_imports_neither_torch_nor_transformers() -> None:
    """Synth imports it: loading torch there would cost seconds on every `cdk` command."""
    probe = "import sys, training.arguments; print(sorted({'torch', 'transformers', 'datasets'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_lean_step_flags_parse_and_a_contradiction_is_refused() -> None:
    lean = ["--pad-to-multiple-of", "32", "--compile-mode", "reduce-overhead", "--dataloader-workers", "2"]
    args = check_user_flags([*lean, "--run-ahead"])
    assert (args.pad_to_multiple_of, args.compile_mode, args.dataloader_workers, args.run_ahead) == (
        32,
        "reduce-overhead",
        2,
        True,
    )
    defaults = check_user_flags([])
    assert (defaults.pad_to_multiple_of, defaults.compile_mode, defaults.dataloader_workers) == (8, "default", 0)
    assert not defaults.run_ahead
    with pytest.raises(ArgumentsError, match=r"^--compile-mode cudagraphs needs --compile; drop one of them$"):
        check_user_flags(["--compile-mode", "cudagraphs", "--no-compile"])
    with pytest.raises(ArgumentsError, match=r"argument --dataloader-workers: -1 is not a non-negative integer"):
        check_user_flags(["--dataloader-workers", "-1"])


def test_labels_are_comma_separated_names_id_0_first(tmp_path: Path) -> None:
    assert parse_args(["--output-dir", str(tmp_path)]).labels == DEFAULT_LABELS
    args = parse_args(["--output-dir", str(tmp_path), "--labels", "very bad, fine ,good"])
    assert args.labels == ("very bad", "fine", "good")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("positive", "1 label: a classifier needs at least 2"),
        ("yes,no,yes", "label 'yes' is given twice"),
        ("yes,,no", "label '' is not a name of 1-50 letters, digits, spaces and _.+-"),
        ("yes,no;drop", "label 'no;drop' is not a name"),
        ("yes," + "n" * 51, f"label '{'n' * 51}' is not a name of 1-50"),
        (",".join(f"c{index}" for index in range(1001)), "1001 labels: at most 1000"),
    ],
)
def test_bad_labels_are_refused_with_the_reason(tmp_path: Path, value: str, reason: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(f"error: argument --labels: {reason}")):
        parse_args(["--output-dir", str(tmp_path), "--labels", value])


def test_train_args_may_not_set_what_the_instance_sets() -> None:
    with pytest.raises(
        ArgumentsError, match=r"^--labels is set by the training instance from the labels setting; leave it out$"
    ):
        check_user_flags(["--epochs", "2", "--labels=a,b"])
