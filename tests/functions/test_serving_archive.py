"""The serving archive (functions/serving_archive.py) against moto's S3 in-process and a loopback
ResponseURL. The core proof: the weights archive (`training.package --no-handler`) plus the handler
is byte for byte the archive training.package builds with that handler."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions import serving_archive
from stacks.functions import staged_code
from tests.functions.test_cfn import event
from tests.wheel_sets import make_wheel
from training.archive_format import HANDLER_MEMBER
from training.package import build_model_archive
from training.tiny_model import build_model

HANDLER_FILE = Path(__file__).resolve().parents[2] / "inference" / "inference.py"
BUCKET, ASSETS = "pt2-artifacts", "cdk-assets"
WEIGHTS = f"s3://{BUCKET}/runs/run-1/weights.tar.gz"
HANDLER = f"s3://{ASSETS}/0123abcd.py"
TARGET = f"s3://{BUCKET}/runs/run-1/serving/0123abcd/model.tar.gz"


@dataclass(frozen=True)
class Archives:
    full: Path  # what training.package builds with the handler
    weights: Path  # the same without it (--no-handler)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    """Both from the tiny model and the project's handler directory, with two wheels in code/wheels/."""
    root = tmp_path_factory.mktemp("archives")
    model = build_model(root / "model")
    wheels = [make_wheel(root / "wheels", "alpha", "1.0"), make_wheel(root / "wheels", "beta", "2.0")]
    code_dir = HANDLER_FILE.parent
    return Archives(
        full=build_model_archive(model, code_dir, root / "model.tar.gz", wheels),
        weights=build_model_archive(model, code_dir, root / "weights.tar.gz", wheels, handler=False),
    )


@pytest.fixture
def s3(fake_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """moto's S3 with the artifact and asset buckets; the function's /tmp work folder under tmp_path."""
    monkeypatch.setattr(serving_archive, "WORKDIR", tmp_path / "lambda-tmp" / "serving-archive")
    client = boto3.client("s3")
    for bucket in (BUCKET, ASSETS):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    client.put_object(Body=HANDLER_FILE.read_bytes(), **serving_archive.s3_object(HANDLER))
    return client


def put(s3: Any, url: str, body: bytes) -> None:
    s3.put_object(Body=body, **serving_archive.s3_object(url))


def get(s3: Any, url: str) -> bytes:
    return bytes(s3.get_object(**serving_archive.s3_object(url))["Body"].read())


def properties(source: str = WEIGHTS) -> dict[str, str]:
    return {"ServiceToken": "arn", "SourceArchive": source, "Handler": HANDLER, "TargetArchive": TARGET}


def created(url: str, source: str = WEIGHTS) -> dict[str, Any]:
    return event(url, "Create", LogicalResourceId="ServingArchive", ResourceProperties=properties(source))


def tar_gz(members: dict[str, bytes | None]) -> bytes:
    """An archive as `tar czf` writes one: members in the given order, "./" names, real mtimes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.mtime, info.uid, info.uname = 1_700_000_000, 1000, "someone"
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o775
            else:
                info.size, info.mode = len(content), 0o664
            tar.addfile(info, io.BytesIO(content or b""))
    return buffer.getvalue()


def test_the_serving_archive_is_the_archive_training_package_builds_with_the_handler(
    archives: Archives, s3: Any, answers: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = answers
    put(s3, WEIGHTS, archives.weights.read_bytes())
    serving_archive.handler(created(url), None)
    (answer,) = received
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert (answer["PhysicalResourceId"], answer["Data"]) == (TARGET, {"ModelDataUrl": TARGET})
    assert get(s3, TARGET) == archives.full.read_bytes()
    assert not serving_archive.WORKDIR.exists()  # a warm Lambda's /tmp is left empty


def test_a_handler_in_the_source_is_replaced_and_the_rest_copied(s3: Any) -> None:
    """A modelDataUrl archive as `tar czf` makes it: unsorted, "./" names, its own handler."""
    source = f"s3://{BUCKET}/mine/model.tar.gz"
    files = {"config.json": b"{}", "code/requirements.txt": b"transformers\n", "code/inference.py": b"old = 1\n"}
    put(s3, source, tar_gz({"code": None, **files, "model.safetensors": b"\0weights"}))
    assert serving_archive.build(properties(source)) == (TARGET, {"ModelDataUrl": TARGET})
    with tarfile.open(fileobj=io.BytesIO(get(s3, TARGET))) as tar:
        members = tar.getmembers()
        content = {member.name: tar.extractfile(member).read() for member in members if member.isfile()}  # type: ignore[union-attr]
    names = [member.name for member in members]
    assert names == ["code", HANDLER_MEMBER, "code/requirements.txt", "config.json", "model.safetensors"]
    assert content == {**files, HANDLER_MEMBER: HANDLER_FILE.read_bytes(), "model.safetensors": b"\0weights"}
    assert all((m.mtime, m.uid, m.uname, m.mode) == (0, 0, "", 0o755 if m.isdir() else 0o644) for m in members)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, f"cannot read {WEIGHTS} (404): it is missing or not readable. It is the weights archive the run's"),
        (
            tar_gz({"config.json": b"{}"}),
            f"the source archive {WEIGHTS} is not a model archive of this app: it has no code/requirements.txt",
        ),
        (b"<html>not an archive</html>", f"the source archive {WEIGHTS} is not a gzipped tar (model.tar.gz)"),
    ],
    ids=["missing", "not-this-apps", "not-an-archive"],
)
def test_a_source_that_cannot_serve_answers_failed_with_the_reason(
    s3: Any, answers: tuple[str, list[dict[str, Any]]], body: bytes | None, reason: str
) -> None:
    url, received = answers
    if body is not None:
        put(s3, WEIGHTS, body)
    serving_archive.handler(created(url), None)
    (answer,) = received
    assert answer["Status"] == "FAILED"
    assert f"ArchiveError: {reason}" in answer["Reason"]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/run-1/serving/")
    assert not serving_archive.WORKDIR.exists()


def test_the_staged_function_code_imports_without_the_repository_or_torch(tmp_path: Path) -> None:
    """What Lambda runs: the staged folder alone on sys.path, the interpreter isolated from this checkout."""
    folder = staged_code()
    probe = (
        f"import json, sys; sys.path.insert(0, {str(folder)!r}); import functions.serving_archive, training; "
        "print(json.dumps([training.__file__, sorted({'torch', 'transformers', 'onnx'} & set(sys.modules))]))"
    )
    run = subprocess.run([sys.executable, "-I", "-c", probe], check=False, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    training_file, heavy = json.loads(run.stdout)
    assert Path(training_file).is_relative_to(folder)
    assert heavy == []
