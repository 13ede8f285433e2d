"""Training data: tweet_eval sentiment from the hub, or local files with `text` and `label` columns.

Everything is checked before a model is loaded, so a bad file fails in seconds with one line that
says what is wrong, not minutes later inside a collate function on some GPU. Besides train and
validation (which picks the best checkpoint), a held-out test split is loaded when there is one: the
score a user compares runs by, since the validation score was the one the selection maximised.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset
from datasets.exceptions import DatasetsError
from transformers import PreTrainedTokenizerBase

from training.arguments import data_files_problem

LABELS = ("negative", "neutral", "positive")
COLUMNS = ("text", "label")
SPLITS = ("train", "validation")
HELD_OUT = "test"  # optional
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class DataError(ValueError):
    """The training data is unusable; the message names the split and the problem."""


def load_splits(
    dataset: str,
    config: str | None,
    train_file: Path | None = None,
    validation_file: Path | None = None,
    test_file: Path | None = None,
    revision: str | None = None,
) -> DatasetDict:
    """Loads and checks the train and validation splits, and the test split if there is one: from the
    files if given, else from the hub dataset at `revision`."""
    problem = data_files_problem(train_file, validation_file, test_file)
    if problem:
        raise DataError(problem)
    if train_file is not None and validation_file is not None:
        files = {"train": train_file, "validation": validation_file, HELD_OUT: test_file}
        splits = DatasetDict({name: _load_file(name, path) for name, path in files.items() if path is not None})
    else:
        splits = _load_hub(dataset, config, revision)
    for name, split in splits.items():
        check_split(name, split)
    return DatasetDict({name: split.select_columns(list(COLUMNS)) for name, split in splits.items()})


def uses_files(train_file: Path | None, validation_file: Path | None, test_file: Path | None) -> bool:
    """Whether load_splits reads files (or refuses them) rather than the hub dataset."""
    return any(path is not None for path in (train_file, validation_file, test_file))


def _load_hub(dataset: str, config: str | None, revision: str | None) -> DatasetDict:
    loaded = load_dataset(dataset, config, revision=revision)
    missing = [name for name in SPLITS if name not in loaded]
    if missing:
        raise DataError(f"dataset {dataset} ({config}) has no {', '.join(missing)} split (has {', '.join(loaded)})")
    return DatasetDict({name: loaded[name] for name in (*SPLITS, HELD_OUT) if name in loaded})


def _load_file(split: str, path: Path) -> Dataset:
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{split} file {path}: unsupported type; use {', '.join(FILE_BUILDERS)}")
    if not path.is_file():
        raise DataError(f"{split} file {path}: not found")
    try:
        return load_dataset(builder, data_files=str(path), split="train")
    except DatasetsError as error:
        raise DataError(f"{split} file {path}: cannot be read: {error.__cause__ or error}") from None
    except ValueError:  # datasets cannot hold an empty split read from a file: a header alone ends here
        raise DataError(f"{split} split ({path}): no rows") from None


def check_split(name: str, split: Dataset) -> None:
    """Refuses missing columns, an empty split, missing texts and labels other than the integers 0..2."""
    missing = [column for column in COLUMNS if column not in split.column_names]
    if missing:
        raise DataError(
            f"{name} split: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(COLUMNS)}, found {', '.join(split.column_names)}"
        )
    if split.num_rows == 0:
        raise DataError(f"{name} split: no rows")
    missing_texts = split.data.column("text").null_count
    if missing_texts:
        raise DataError(f"{name} split: {missing_texts} row(s) without text")
    valid = range(len(LABELS))
    bad = [label for label in split.unique("label") if type(label) is not int or label not in valid]
    if bad:
        names = ", ".join(f"{index}={label}" for index, label in enumerate(LABELS))
        shown = ", ".join(repr(label) for label in sorted(bad, key=repr)[:5])
        raise DataError(f"{name} split: labels must be integers {names}; found {shown}")


def tokenize(
    splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int, pad_to_max_length: bool
) -> DatasetDict:
    """Token ids per tweet, truncated to `max_length`.

    Padding to `max_length` is the recipe's choice and most of its cost (a ~35-token tweet becomes 512);
    without it the collator pads each batch only to its longest tweet.
    """

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            padding="max_length" if pad_to_max_length else False,
        )

    return splits.map(encode, batched=True, remove_columns=["text"], desc="tokenize")
