"""Bad data fails with one clear line before any model is loaded."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from training.data import HELD_OUT, DataError, load_splits
from training.train import main

GOOD_ROWS = [("great day", 2), ("so sad", 0), ("monday meeting", 1)]


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def good_validation(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "validation.csv", ["text", "label"], GOOD_ROWS)


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (
            ["tweet", "label"],
            GOOD_ROWS,
            "train split: missing column(s) text; expected text, label, found tweet, label",
        ),
        (["text", "sentiment"], GOOD_ROWS, "train split: missing column(s) label;"),
        (
            ["text", "label"],
            [*GOOD_ROWS, ("wow", 3)],
            "train split: a label must be one of negative, neutral, positive or its id 0-2; found 3",
        ),
        (["text", "label"], [*GOOD_ROWS, ("odd", -1)], "; found -1"),
        (["text", "label"], [*GOOD_ROWS, ("odd", "Positive")], "; found 'Positive'"),  # names are exact
        (["text", "label"], [("great day", 1.5), ("fine", 1)], "; found 1.0, 1.5"),
        (["text", "label"], [("great day", 2), ("", 1)], "train split: 1 row(s) without text"),
        (["text", "label"], [*GOOD_ROWS, ("no label", None)], "train split: 1 row(s) without label"),
        (
            ["text", "label"],
            [("great day", "positive"), ("so sad", 0), ("monday meeting", "neutral")],
            "the label columns mix names and ids; a label must be one of negative, neutral, positive or its id 0-2,",
        ),
        (["text", "label"], GOOD_ROWS[:2], "train split: no rows of label(s) 'neutral'; give every label examples"),
        (["text", "label"], [], "train.csv): no rows"),
    ],
)
def test_bad_rows_are_refused(tmp_path: Path, header: list[str], rows: list[tuple], message: str) -> None:
    train = write_csv(tmp_path / "train.csv", header, rows)
    with pytest.raises(DataError) as refused:
        load_splits("unused", None, train, good_validation(tmp_path))
    assert message in str(refused.value)


def test_files_are_checked_before_loading(tmp_path: Path) -> None:
    validation = good_validation(tmp_path)
    with pytest.raises(DataError, match="go together"):
        load_splits("unused", None, validation, None)
    with pytest.raises(DataError, match=r"unsupported type; use \.csv, \.json, \.jsonl, \.parquet"):
        load_splits("unused", None, tmp_path / "train.txt", validation)
    with pytest.raises(DataError, match=r"train file .*missing\.csv: not found"):
        load_splits("unused", None, tmp_path / "missing.csv", validation)
    (tmp_path / "blank.csv").touch()
    with pytest.raises(DataError, match=r"train file .*blank\.csv: cannot be read: No columns to parse"):
        load_splits("unused", None, tmp_path / "blank.csv", validation)


def test_a_test_file_gets_the_same_checks_and_goes_with_the_other_files(tmp_path: Path) -> None:
    train, validation = write_csv(tmp_path / "train.csv", ["text", "label"], GOOD_ROWS), good_validation(tmp_path)
    test = write_csv(tmp_path / "test.csv", ["text", "label"], [*GOOD_ROWS, ("meh", 7)])
    with pytest.raises(DataError, match="test split: a label must be one of"):
        load_splits("unused", None, train, validation, test)
    with pytest.raises(DataError, match="--test-file goes with --train-file and --validation-file"):
        load_splits("unused", None, None, None, test)
    assert list(load_splits("unused", None, train, validation)) == ["train", "validation"]


@pytest.mark.parametrize("splits", [["train", "validation", HELD_OUT], ["train", "validation"]])
def test_a_dataset_brings_its_test_split_when_it_has_one(tmp_path: Path, splits: list[str]) -> None:
    """Through load_dataset's own path for a dataset id; a local folder of split files stands in for the hub."""
    for name in splits:
        write_csv(tmp_path / f"{name}.csv", ["text", "label"], GOOD_ROWS)
    assert list(load_splits(str(tmp_path), None)) == splits


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_json_lines_and_parquet_load(tmp_path: Path, suffix: str) -> None:
    rows = Dataset.from_dict({"text": [text for text, _ in GOOD_ROWS], "label": [2, 0, 1], "id": [7, 8, 9]})
    path = tmp_path / f"train{suffix}"
    rows.to_json(path) if suffix == ".jsonl" else rows.to_parquet(path)
    splits = load_splits("unused", None, path, good_validation(tmp_path))
    assert splits["train"].column_names == ["text", "label"]  # extra columns dropped
    assert splits["train"]["label"][:] == [2, 0, 1]


def test_cli_reports_bad_data_before_loading_the_model(
    tmp_path: Path, train_argv: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The model path does not exist: reaching it would fail differently, so the data error came first."""
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [*GOOD_ROWS, ("wow", 5)])
    argv = [*train_argv(tmp_path / "out"), "--train-file", str(train), "--model-name", str(tmp_path / "none")]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert str(exited.value).startswith("error: train split: a label must be one of")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_exits_non_zero_with_one_line(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    train = write_csv(tmp_path / "train.csv", ["tweet", "label"], GOOD_ROWS)
    command = [sys.executable, "-m", "training.train", "--output-dir", str(tmp_path / "out")]
    command += ["--train-file", str(train), "--validation-file", str(good_validation(tmp_path))]
    result = subprocess.run(command, env=subprocess_env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == "error: train split: missing column(s) text; expected text, label, found tweet, label"


def labels_of(splits: DatasetDict) -> dict[str, list[int]]:
    return {name: split["label"][:] for name, split in splits.items()}


def test_names_from_labels_become_their_ids_in_every_split(tmp_path: Path) -> None:
    labels = ("complaint", "question", "praise", "other", "very bad")
    rows = [("late again", "complaint"), ("why", "question"), ("thanks", "praise"), ("ok", "other"), ("no", "very bad")]
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    validation = write_csv(tmp_path / "validation.csv", ["text", "label"], rows[::-1])
    splits = load_splits("unused", None, train, validation, labels=labels)
    assert labels_of(splits) == {"train": [0, 1, 2, 3, 4], "validation": [4, 3, 2, 1, 0]}


@pytest.mark.parametrize(
    ("train_labels", "validation_labels", "ids"),
    [
        ([1, 2, 3, 4, 5], [5, 1], ([0, 1, 2, 3, 4], [4, 0])),  # every value is a name: names win
        ([0, 1, 2, 3, 4], [4, 1], ([0, 1, 2, 3, 4], [4, 1])),  # 0 is no name: all are ids
        ([0, 1, 2, 3, 4], [5, 1], None),  # 0 is only an id, 5 only a name: refused, not guessed
    ],
)
def test_star_ratings_named_by_digits_are_read_one_way_across_all_splits(
    tmp_path: Path, train_labels: list[int], validation_labels: list[int], ids: tuple[list[int], ...] | None
) -> None:
    def split_file(name: str, values: list[int]) -> Path:
        return write_csv(tmp_path / f"{name}.csv", ["text", "label"], [(f"text {v}", v) for v in values])

    files = (split_file("train", train_labels), split_file("validation", validation_labels))
    if ids is None:
        with pytest.raises(
            DataError, match="the label columns mix names and ids; a label must be one of 1, 2, 3, 4, 5 or its id 0-4"
        ):
            load_splits("unused", None, *files, labels=("1", "2", "3", "4", "5"))
        return
    splits = load_splits("unused", None, *files, labels=("1", "2", "3", "4", "5"))
    assert labels_of(splits) == {"train": ids[0], "validation": ids[1]}


def test_ids_written_as_text_in_json_lines_are_ids(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    Dataset.from_dict({"text": ["a", "b", "c"], "label": ["2", "0", "1"]}).to_json(path)
    splits = load_splits("unused", None, path, good_validation(tmp_path))
    assert labels_of(splits)["train"] == [2, 0, 1]
