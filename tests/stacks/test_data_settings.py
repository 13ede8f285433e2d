"""The settings of the user's own data: S3 URLs of the files, the labels, the KMS key; one-line errors at synth."""

from __future__ import annotations

import pytest

from stacks.settings import Settings, SettingsError

TRAIN = "s3://my-labelled-texts/sets/v1/train.csv"
VALIDATION = "s3://my-labelled-texts/sets/v1/validation.jsonl"
TEST = "s3://other-bucket.example/test/part=1/test.parquet"
KEY_ARN = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FILES = {"trainDataUrl": TRAIN, "validationDataUrl": VALIDATION}


def refused(context: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(context)
    message = str(caught.value)
    assert "\n" not in message
    assert "allowed is" in message
    return message


def test_by_default_training_reads_the_hub_dataset_with_the_recipes_labels() -> None:
    settings = Settings.from_mapping({})
    assert settings.data_urls == {}
    assert settings.labels == "negative,neutral,positive"
    assert settings.data_kms_key_arn == ""


def test_files_labels_and_key_are_read_by_split() -> None:
    settings = Settings.from_mapping(
        {**FILES, "testDataUrl": TEST, "labels": "very bad, fine ,good", "dataKmsKeyArn": KEY_ARN}
    )
    assert settings.data_urls == {"train": TRAIN, "validation": VALIDATION, "test": TEST}
    assert settings.labels == "very bad,fine,good"  # spaces around the commas dropped
    assert settings.data_kms_key_arn == KEY_ARN


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("trainDataUrl", "https://my-bucket/train.csv", ""),
        ("trainDataUrl", "s3://my-bucket/train.txt", ".txt is not a data file type; "),
        ("trainDataUrl", "s3://my-bucket/sets/train", "no extension is not a data file type; "),
        ("trainDataUrl", "s3://my-bucket/sets/*.csv", ""),  # IAM would read * as a wildcard
        ("validationDataUrl", "s3://My_Bucket/validation.csv", ""),
        ("testDataUrl", "s3://my-bucket/", ""),
        ("labels", "positive", "1 label: a classifier needs at least 2; "),
        ("labels", ",".join(f"intent {index:03d}" for index in range(200)), "2199 characters; "),  # user data room
        ("trainDataUrl", f"s3://my-bucket/{'k' * 250}.csv", "269 characters; "),
        ("labels", "yes,no,yes", "label 'yes' is given twice; "),
        ("labels", "yes,no;rm", "label 'no;rm' is not a name of 1-50 letters, digits, spaces and _.+- "),
        ("dataKmsKeyArn", "alias/my-data-key", ""),
        ("dataKmsKeyArn", "arn:aws:kms:us-west-2:123456789012:alias/my-data-key", ""),  # grants need the key
    ],
)
def test_a_bad_value_names_the_key_the_value_the_reason_and_what_is_allowed(key: str, value: str, reason: str) -> None:
    message = refused({**FILES, key: value})
    assert message.startswith(f"context '{key}' = {value!r} is invalid: {reason}")


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"trainDataUrl": TRAIN},
            "context 'validationDataUrl' = '' is invalid: allowed is an s3:// URL, since the train and validation "
            "files go together",
        ),
        ({"validationDataUrl": VALIDATION}, "context 'trainDataUrl' = '' is invalid: allowed is an s3:// URL"),
        (
            {"testDataUrl": TEST},
            f"context 'testDataUrl' = '{TEST}' is invalid: allowed is empty without trainDataUrl and validationDataUrl",
        ),
        ({"dataKmsKeyArn": KEY_ARN}, f"context 'dataKmsKeyArn' = '{KEY_ARN}' is invalid: allowed is empty without"),
        (
            {**FILES, "modelDataUrl": "s3://models/m/model.tar.gz"},
            f"context 'trainDataUrl' = '{TRAIN}' is invalid: allowed is empty with modelDataUrl (no training)",
        ),
        (
            {**FILES, "trainArgs": "--epochs 2 --train-file /x/a.csv --validation-file /x/b.csv"},
            "context 'trainArgs' = '--epochs 2 --train-file /x/a.csv --validation-file /x/b.csv' is invalid: "
            "--train-file would replace the files of trainDataUrl and the others; allowed is trainArgs without "
            "--train-file, --validation-file, --test-file when they are set",
        ),
        (
            {"trainArgs": "--labels yes,no"},
            "context 'trainArgs' = '--labels yes,no' is invalid: --labels is set by the training instance from "
            "the labels setting; leave it out; allowed is",
        ),
    ],
)
def test_combinations_that_would_fail_on_the_instance_fail_at_synth(context: dict[str, str], message: str) -> None:
    assert refused(context).startswith(message)


def test_train_args_may_still_name_files_in_the_container_without_the_settings() -> None:
    flags = "--train-file /workspace/project/training/train.csv --validation-file /workspace/project/training/v.csv"
    assert Settings.from_mapping({"trainArgs": flags}).data_urls == {}
