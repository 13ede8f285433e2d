"""Builds the archive the endpoint serves: a weights archive with this deploy's handler added as
code/inference.py.

The serving toolkit reads the handler only from code/ inside the model data, and the training
instance uploads the weights once per run, without a handler (python -m training.package
--no-handler). This resource adds the handler the stack uploaded as a file asset and writes the
result where the stack says (a key per handler version), so a handler change reaches the endpoint in
one deploy, with no GPU instance and no retraining. The result is written in
training.archive_format: byte for byte what training.package builds from the same model and handler.
A source that has a code/inference.py already (a modelDataUrl archive) has it replaced.

Lambda reuses /tmp between invocations, and an archive is as large as the model: WORKDIR is emptied
before and after each one.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import logging
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.exceptions import ClientError

from functions.cfn import respond
from training.archive_format import HANDLER_MEMBER, REQUIREMENTS_MEMBER, Source, Stream, write_archive

WORKDIR = Path(tempfile.gettempdir()) / "serving-archive"
SOURCE_ORIGIN = (
    "the weights archive the run's training instance uploads when training finishes "
    "(or, with modelDataUrl, the archive named there)"
)
logging.getLogger().setLevel(logging.INFO)


class ArchiveError(ValueError):
    """The source or the properties cannot make a serving archive; the message says why."""


def handler(event: dict[str, Any], context: object) -> None:
    respond(event, build)


def build(properties: dict[str, Any]) -> tuple[str, dict[str, str]]:
    source, handler_file, target = properties["SourceArchive"], properties["Handler"], properties["TargetArchive"]
    if target == source:
        raise ArchiveError(f"TargetArchive {target} is the SourceArchive: the source would be overwritten")
    s3 = boto3.client("s3")
    shutil.rmtree(WORKDIR, ignore_errors=True)  # left by an invocation that ran out of time
    WORKDIR.mkdir(parents=True)
    try:
        with readable(handler_file, "the handler, which the stack uploads as a file asset before it deploys"):
            code = s3.get_object(**s3_object(handler_file))["Body"].read()
        archive = WORKDIR / "source.tar.gz"
        with readable(source, SOURCE_ORIGIN):
            s3.download_file(Filename=str(archive), **s3_object(source))
        logging.info("read %s: %s", source, described(archive))
        output = write_serving_archive(source, archive, code, WORKDIR / "serving.tar.gz")
        written = described(output)
        s3.upload_file(str(output), **s3_object(target))
        logging.info("wrote %s: %s, with the handler %s: %s", target, written, handler_file, described(code))
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise ArchiveError(f"{WORKDIR} is full: the function needs more ephemeral storage") from error
        raise
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)
    return target, {"ModelDataUrl": target}


@contextlib.contextmanager
def readable(url: str, origin: str) -> Iterator[None]:
    """Turns S3's answer for a missing object (403 without s3:ListBucket) into one that names it."""
    try:
        yield
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code not in ("404", "NoSuchKey", "403", "AccessDenied"):
            raise
        raise ArchiveError(f"cannot read {url} ({code}): it is missing or not readable. It is {origin}") from error


def write_serving_archive(url: str, source: Path, code: bytes, output: Path) -> Path:
    """`source` (the archive at `url`) with `code` as its handler, in the deterministic format.

    Unpacked to a plain tar first: its members are then read in sorted order at no cost, where a
    gzip stream would be decompressed again from the start for every member out of order."""
    plain = source.with_suffix("")
    try:
        with gzip.open(source, "rb") as unzipped, plain.open("wb") as unpacked:
            shutil.copyfileobj(unzipped, unpacked, 1024 * 1024)
        source.unlink()  # /tmp holds the unpacked source and the output, not a third copy
        with tarfile.open(plain, "r:") as tar:
            members = copied_members(url, tar)
            members[HANDLER_MEMBER] = code
            return write_archive(members, output)
    except (gzip.BadGzipFile, EOFError, zlib.error, tarfile.TarError) as error:
        raise ArchiveError(f"the source archive {url} is not a gzipped tar (model.tar.gz): {error}") from error


def copied_members(url: str, tar: tarfile.TarFile) -> dict[str, Source]:
    """The archive's files and directories by normalized name ("./code/x" is "code/x"); a later member
    of the same name wins, as it does when the archive is unpacked."""
    members: dict[str, Source] = {}
    for member in tar.getmembers():
        name = _member_name(url, member.name)
        reader = tar.extractfile(member) if member.isfile() else None
        if reader is not None:
            members[name] = Stream(member.size, reader)
        elif not member.isdir():
            raise ArchiveError(f"the source archive {url} has {member.name}, a link or device: only files are copied")
        elif name != ".":
            members[name] = None
    if REQUIREMENTS_MEMBER not in members:
        raise ArchiveError(
            f"the source archive {url} is not a model archive of this app: it has no {REQUIREMENTS_MEMBER} "
            "(python -m training.package writes one)"
        )
    return members


def _member_name(url: str, name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveError(f"the source archive {url} has {name}, a path outside the archive")
    return path.as_posix()


def s3_object(url: str) -> dict[str, str]:
    """s3://bucket/key as boto3's Bucket and Key arguments."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise ArchiveError(f"{url} is not an s3://bucket/key URL")
    return {"Bucket": bucket, "Key": key}


def described(content: Path | bytes) -> str:
    if isinstance(content, bytes):
        return f"{len(content)} bytes, sha256 {hashlib.sha256(content).hexdigest()}"
    with content.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return f"{content.stat().st_size} bytes, sha256 {digest}"
