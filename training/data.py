"""Training data: tweet_eval sentiment from the hub, or local files with `text` and `label` columns.

Everything is checked before a model is loaded, so a bad file fails in seconds with one line that
says what is wrong, not minutes later inside a collate function on some GPU. Besides train and
validation (which picks the best checkpoint), a held-out test split is loaded when there is one: the
score a user compares runs by, since the validation score was the one the selection maximised.

A label column may hold the class names (`--labels`, e.g. `positive`) or their ids (0 for the first
name, as a number or its digits): whatever a user's export has. One rule decides for all splits
together, so no split can read `1` differently from another: if every value is a name, they are
names; else, if every value is an id, they are ids; else the values that are neither are refused.
Names therefore win where names look like ids (`--labels 1,2,3,4,5` for star ratings reads a
file's 1..5 as those names).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Value, load_dataset
from datasets.exceptions import DatasetsError
from transformers import PreTrainedTokenizerBase

from training.arguments import DEFAULT_LABELS, FILE_BUILDERS, data_files_problem

COLUMNS = ("text", "label")
SPLITS = ("train", "validation")
HELD_OUT = "test"  # optional
SHOWN_VALUES = 5  # bad label values named in an error


class DataError(ValueError):
    """The training data is unusable; the message names the split and the problem."""


def load_splits(
    dataset: str,
    config: str | None,
    train_file: Path | None = None,
    validation_file: Path | None = None,
    test_file: Path | None = None,
    revision: str | None = None,
    labels: Sequence[str] = DEFAULT_LABELS,
) -> DatasetDict:
    """Loads and checks the train and validation splits, and the test split if there is one: from the
    files if given, else from the hub dataset at `revision`. Labels come back as ids into `labels`."""
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
    return label_ids(DatasetDict({name: split.select_columns(list(COLUMNS)) for name, split in splits.items()}), labels)


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
    """Refuses missing columns, an empty split, and rows without a text or a label."""
    missing = [column for column in COLUMNS if column not in split.column_names]
    if missing:
        raise DataError(
            f"{name} split: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(COLUMNS)}, found {', '.join(split.column_names)}"
        )
    if split.num_rows == 0:
        raise DataError(f"{name} split: no rows")
    for column in COLUMNS:
        empty = split.data.column(column).null_count
        if empty:
            raise DataError(f"{name} split: {empty} row(s) without {column}")


def label_ids(splits: DatasetDict, labels: Sequence[str]) -> DatasetDict:
    """The splits with every label as its id into `labels` (names or ids, by the module's rule); every
    class needs training rows, or the model could never predict it."""
    values = {name: split.unique("label") for name, split in splits.items()}
    every = [value for found in values.values() for value in found]
    index = {name: position for position, name in enumerate(labels)}
    if all(_as_name(value) in index for value in every):
        splits = _relabel(splits, lambda value: index[str(value)])  # text, or an integer as a file writes it
    elif all(_as_id(value, len(labels)) is not None for value in every):
        if not all(type(value) is int for value in every):  # ids written as text, e.g. "2" in a JSON file
            splits = _relabel(splits, lambda value: _as_id(value, len(labels)))
    else:
        raise DataError(_bad_labels(values, labels))
    trained = set(splits["train"].unique("label"))
    unseen = [repr(name) for position, name in enumerate(labels) if position not in trained]
    if unseen:
        raise DataError(
            f"train split: no rows of label(s) {', '.join(unseen[:SHOWN_VALUES])}; "
            "give every label examples, or leave it out of the labels"
        )
    return splits


def _relabel(splits: DatasetDict, label_id: Callable[[Any], int | None]) -> DatasetDict:
    def relabel(split: Dataset) -> Dataset:
        features = split.features.copy()
        features["label"] = Value("int64")  # stated: map would cast the ids back to a text column's type
        return split.map(
            lambda batch: {"label": [label_id(value) for value in batch["label"]]},
            batched=True,
            features=features,
            desc="label ids",
        )

    return DatasetDict({name: relabel(split) for name, split in splits.items()})


def _as_name(value: Any) -> str | None:
    """The text a label value would be as a name: strings as they are, integers as a file writes them."""
    if isinstance(value, str):
        return value
    return str(value) if type(value) is int else None


def _as_id(value: Any, count: int) -> int | None:
    """The id a label value would be: an integer, or its digits as text (a CSV column that holds a name
    anywhere is read as text throughout), within 0..count-1."""
    number = value if type(value) is int else int(value) if isinstance(value, str) and value.isdecimal() else None
    return number if number is not None and 0 <= number < count else None


def _bad_labels(values: dict[str, list[Any]], labels: Sequence[str]) -> str:
    allowed = f"a label must be one of {', '.join(labels)} or its id 0-{len(labels) - 1}"
    for name, found in values.items():
        bad = [value for value in found if _as_name(value) not in labels and _as_id(value, len(labels)) is None]
        if bad:
            shown = ", ".join(repr(value) for value in sorted(bad, key=repr)[:SHOWN_VALUES])
            return f"{name} split: {allowed}; found {shown}"
    return f"the label columns mix names and ids; {allowed}, the same kind in every file"


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
