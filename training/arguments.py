"""The command line of `python -m training.train`, importable without torch or transformers.

The CDK app checks the `trainArgs` setting with this very parser at synth (stacks/settings.py), so a
typo or an out-of-range value fails in a second on the user's machine, not on a GPU instance after
its boot, image pull and build. Flags must be spelt out in full: an abbreviation that argparse would
accept today could become ambiguous when a flag is added.
"""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path
from typing import NoReturn

DEFAULT_MODEL = "cardiffnlp/twitter-roberta-base-2021-124m"
DEFAULT_DATASET = "cardiffnlp/tweet_eval"
RECIPE_MAX_LENGTH = 512
# TrainingArguments optimizers that need nothing beyond torch and transformers (the others need
# bitsandbytes, galore, torchao, ... which the training image does not have).
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "adafactor", "sgd", "adagrad", "rmsprop")
# torch.compile's inductor modes, and "cudagraphs": torch's cudagraphs backend instead of inductor (the model's
# own kernels, unfused, so it compiles in seconds, not minutes). CUDA_GRAPH_MODES replay a step's kernels as
# CUDA graphs: one launch instead of hundreds.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune", "cudagraphs")
DEFAULT_PAD_MULTIPLE = 8  # tensor-core friendly; every batch still gets its own width
DEFAULT_LABELS = ("negative", "neutral", "positive")  # tweet_eval sentiment's ids 0, 1, 2
# The file types --train-file and the others may have, and the `datasets` builder that reads each.
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# Set by the training instance's bootstrap (training/bootstrap.sh), never through trainArgs: flag -> from what.
BOOTSTRAP_FLAGS = {"--output-dir": "the training instance", "--labels": "the training instance from the labels setting"}
# A class name: what the endpoint answers, so letters, digits and a few separators, one line, no commas.
_LABEL_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_ .+-]{0,48}[A-Za-z0-9_.+-])?")
MAX_LABELS = 1000


class ArgumentsError(ValueError):
    """Flags training.train would refuse; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(message)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a non-negative integer")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def parse_labels(value: str) -> tuple[str, ...]:
    """`--labels a,b,c`: the class names, id 0 first; spaces around the commas are dropped."""
    names = tuple(name.strip() for name in value.split(","))
    bad = [name for name in names if not _LABEL_NAME.fullmatch(name)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"label {bad[0]!r} is not a name of 1-50 letters, digits, spaces and _.+- (no leading or trailing space)"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"label {repeated[0]!r} is given twice")
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"{len(names)} label: a classifier needs at least 2")
    if len(names) > MAX_LABELS:
        raise argparse.ArgumentTypeError(f"{len(names)} labels: at most {MAX_LABELS}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m training.train",
        description="Fine-tune a RoBERTa sentiment classifier with the PyTorch 2 recipe.",
        allow_abbrev=False,
    )
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--model-name", default=DEFAULT_MODEL, help="hub id or local directory")
    parser.add_argument(
        "--model-revision", help="hub branch, tag or commit (default: the commit pinned for the model, else main)"
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="hub dataset (ignored with files)")
    parser.add_argument("--dataset-config", default="sentiment")
    parser.add_argument("--dataset-revision", help="as --model-revision, for the dataset")
    parser.add_argument("--train-file", type=Path, help="CSV / JSON lines / parquet with text,label")
    parser.add_argument("--validation-file", type=Path, help="picks the best checkpoint")
    parser.add_argument("--test-file", type=Path, help="held out: scored once, after the choice")
    parser.add_argument(
        "--labels",
        type=parse_labels,
        default=DEFAULT_LABELS,
        help=f"class names, comma-separated, id 0 first (default: {','.join(DEFAULT_LABELS)}); "
        "a file's label column holds these names or their ids",
    )
    parser.add_argument("--epochs", type=_positive_int, default=10)
    parser.add_argument("--learning-rate", type=_positive_float, default=1e-5)
    parser.add_argument("--global-batch-size", type=_positive_int, default=128, help="samples per optimizer step")
    parser.add_argument(
        "--max-device-batch-size",
        type=_positive_int,
        help="largest forward pass per device; above it the share is split and gradients accumulated",
    )
    parser.add_argument("--pad-to-max-length", action="store_true", help="pad every tweet to --max-length (the recipe)")
    parser.add_argument("--max-length", type=_positive_int, help=f"default: {RECIPE_MAX_LENGTH} or the model's")
    parser.add_argument(
        "--pad-to-multiple-of",
        type=_positive_int,
        default=DEFAULT_PAD_MULTIPLE,
        help="pad each batch's width up to a multiple of this; with --max-length it bounds the widths a run "
        "sees to max-length / N, which CUDA graphs need (one graph per shape)",
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="torch.compile")
    parser.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode (inductor), or cudagraphs: CUDA graphs of the unfused kernels, compiled in seconds; "
        f"{', '.join(CUDA_GRAPH_MODES)} replay CUDA graphs (no gradient accumulation)",
    )
    parser.add_argument(
        "--dataloader-workers",
        type=_non_negative_int,
        default=0,
        help="processes that collate batches beside the training loop, kept for the whole run (0: in the loop)",
    )
    parser.add_argument(
        "--run-ahead",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="let the host queue the next step while the GPU runs this one: non-blocking input copies and no "
        "per-step read of the loss (a NaN or infinite loss is then logged as such instead of being left out)",
    )
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    parser.add_argument("--optim", default="adamw_torch_fused", choices=OPTIMIZERS, help="a TrainingArguments optim")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=_positive_int, help="stop after this many steps (smoke runs)")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the newest checkpoint",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks; a bad command line exits with `error: ...` like any argparse program."""
    try:
        return check(_parse(argv))
    except ArgumentsError as error:
        raise SystemExit(f"error: {error}") from None


def check_user_flags(flags: list[str]) -> argparse.Namespace:
    """What the instance will run with `flags` (the trainArgs setting) after the bootstrap's own."""
    reserved = [flag.split("=", 1)[0] for flag in flags if flag.split("=", 1)[0] in BOOTSTRAP_FLAGS]
    if reserved:
        raise ArgumentsError(f"{reserved[0]} is set by {BOOTSTRAP_FLAGS[reserved[0]]}; leave it out")
    return check(_parse(["--output-dir", "/workspace/output", *flags]))


def check(args: argparse.Namespace) -> argparse.Namespace:
    """Combinations argparse cannot express."""
    problem = data_files_problem(args.train_file, args.validation_file, args.test_file)
    if problem:
        raise ArgumentsError(problem)
    if args.compile_mode != "default" and not args.compile:
        raise ArgumentsError(f"--compile-mode {args.compile_mode} needs --compile; drop one of them")
    return args


def data_files_problem(train: Path | None, validation: Path | None, test: Path | None) -> str | None:
    """Files replace the hub dataset as a whole: train and validation together, test only with them."""
    if (train is None) != (validation is None):
        return "--train-file and --validation-file go together; give both or neither"
    if test is not None and train is None:
        return "--test-file goes with --train-file and --validation-file"
    return None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise ArgumentsError(f"unrecognized argument {unknown[0]}{_suggestion(parser, unknown[0])}")
    return args


def _suggestion(parser: argparse.ArgumentParser, unknown: str) -> str:
    flags = [flag for action in parser._actions for flag in action.option_strings]
    close = difflib.get_close_matches(unknown.split("=", 1)[0], flags, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
