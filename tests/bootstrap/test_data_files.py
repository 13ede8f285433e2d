"""The user's data files in S3 (trainDataUrl and the others): checked in seconds before anything is pulled,
copied into the output mount, and passed to training.train with the labels."""

from __future__ import annotations

import time

import pytest

from tests.bootstrap.bootstrap_sandbox import MODEL_KEY, Run, Sandbox

DATA_BUCKET = "my-labelled-texts"
FILES = {"train": "sets/v1/train.csv", "validation": "sets/v1/validation.jsonl", "test": "sets/v1/test.parquet"}
LABELS = "very bad,fine,good"
FORBIDDEN = "\nAn error occurred (403) when calling the HeadObject operation: Forbidden\n"
KMS_DENIED = (
    "download failed: s3://my-labelled-texts/sets/v1/train.csv to work/output/data/train.csv An error occurred "
    "(AccessDenied) when calling the GetObject operation: User: arn:aws:sts::123456789012:assumed-role/pt2-instance "
    "is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-west-2:123456789012:key/abc\n"
)


def url(split: str) -> str:
    return f"s3://{DATA_BUCKET}/{FILES[split]}"


@pytest.fixture
def with_data(sandbox: Sandbox) -> Sandbox:
    """The three objects uploaded, the URLs and labels set as the training stack exports them."""
    for split, key in FILES.items():
        path = sandbox.s3(key, bucket=DATA_BUCKET)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{split} rows\n")
        sandbox.env[f"{split.upper()}_DATA_S3_URI"] = url(split)
    sandbox.env["LABELS"] = LABELS
    return sandbox


def failure_reason(run: Run) -> str:
    (signal,) = run.signals
    assert signal["Status"] == "FAILURE"
    return signal["Reason"]


def test_the_files_are_checked_then_copied_before_the_image_is_pulled(with_data: Sandbox) -> None:
    run = with_data.run()

    assert run.returncode == 0, run.stdout + run.stderr
    steps = run.steps
    assert steps[steps.index("install-per-boot") + 1 :][:3] == ["check-data", "fetch-data", "fetch-assets"]
    for split, key in FILES.items():
        copied = with_data.work_root / "output" / "data" / f"{split}.{key.rsplit('.', 1)[1]}"
        assert copied.read_text() == f"{split} rows\n"
        assert f"{split} data {url(split)}: {len(copied.read_bytes())} bytes" in run.stdout


def test_training_gets_the_labels_as_one_word_and_the_files_at_their_container_paths(with_data: Sandbox) -> None:
    """The torchrun stand-in fails, as training.train would, unless each file is at its path in the container."""
    run = with_data.run()

    (argv,) = run.calls_to("torchrun")
    assert argv[-8:] == [
        "--labels",
        LABELS,
        "--train-file",
        "/workspace/output/data/train.csv",
        "--validation-file",
        "/workspace/output/data/validation.jsonl",
        "--test-file",
        "/workspace/output/data/test.parquet",
    ]


def test_without_files_there_is_no_data_step_and_no_file_flag(sandbox: Sandbox) -> None:
    sandbox.env["LABELS"] = LABELS
    run = sandbox.run()

    assert not {"check-data", "fetch-data"} & set(run.steps)
    (argv,) = run.calls_to("torchrun")
    assert argv[-2:] == ["--labels", LABELS]
    assert not [word for word in argv if word.endswith("-file")]


def test_a_missing_object_fails_in_seconds_naming_it_before_any_docker_call(with_data: Sandbox) -> None:
    with_data.s3(FILES["validation"], bucket=DATA_BUCKET).unlink()
    started = time.monotonic()
    run = with_data.run()

    assert time.monotonic() - started < 10
    assert run.returncode != 0
    assert run.steps[-1] == "check-data"
    assert run.calls_to("docker") == []
    assert failure_reason(run).startswith(
        f"step check-data failed (exit 1): error: validation data {url('validation')}: "
        "not found (404): no such bucket or key; last log lines:\n"
    )
    assert not with_data.s3(MODEL_KEY).exists()
    assert run.powered_off


def test_every_bad_object_is_named_in_the_log_not_only_the_first(with_data: Sandbox) -> None:
    with_data.s3(FILES["train"], bucket=DATA_BUCKET).unlink()
    with_data.s3(FILES["test"], bucket=DATA_BUCKET).write_bytes(b"")
    run = with_data.run()

    assert f"error: train data {url('train')}: not found (404)" in run.stderr + run.stdout
    assert f"error: test data {url('test')}: the object is empty" in failure_reason(run)
    assert run.calls_to("aws", "s3", "cp") == []  # nothing copied after a failed check


def test_a_403_says_the_key_may_be_missing_since_the_instance_may_not_list_the_bucket(with_data: Sandbox) -> None:
    """What AWS answers for a missing key when the caller has s3:GetObject on it but no s3:ListBucket."""
    with_data.env["STANDIN_FAIL"] = f"aws:s3api head-object --bucket {DATA_BUCKET} --key {FILES['train']} *"
    with_data.env["STANDIN_OUTPUT"] = FORBIDDEN
    reason = failure_reason(with_data.run())

    assert reason.startswith(f"step check-data failed (exit 1): error: train data {url('train')}: access denied (403)")
    assert "no such key (the instance may not list the bucket" in reason


def test_a_copy_refused_by_kms_names_the_setting_that_grants_the_key(with_data: Sandbox) -> None:
    with_data.env["STANDIN_FAIL"] = f"aws:s3 cp --only-show-errors {url('train')} *"
    with_data.env["STANDIN_OUTPUT"] = KMS_DENIED
    run = with_data.run()

    assert run.steps[-1] == "fetch-data"
    assert run.calls_to("docker") == []
    reason = failure_reason(run)
    assert reason.startswith(f"step fetch-data failed (exit 1): error: train data {url('train')}: cannot be copied:")
    assert "kms:Decrypt on resource: arn:aws:kms:us-west-2:123456789012:key/abc" in reason
    assert "needs -c dataKmsKeyArn=<that key's ARN>" in reason


def test_a_later_boot_checks_and_fetches_the_files_again(with_data: Sandbox) -> None:
    """The per-boot wrapper carries the data settings: a reboot mid-run trains on the same files."""
    with_data.env["STANDIN_FAIL"] = "docker:run *training.train*"
    with_data.run()
    bare_env = {key: with_data.env[key] for key in ("PATH", "HOME", "LANG", "STANDIN_DIR")}
    second = with_data.run(["bash", str(with_data.per_boot_dir / "pt2-bootstrap.sh")], env=bare_env)

    assert second.returncode == 0, second.stdout + second.stderr
    assert {"check-data", "fetch-data"} <= set(second.steps)
    (argv,) = second.calls_to("torchrun")
    assert argv[-8:-6] == ["--labels", LABELS]
    assert "/workspace/output/data/test.parquet" in argv
