"""The deterministic tar.gz that model archives are written in: sorted members, zero mtimes and
owners, fixed modes, no gzip name or timestamp. The same members give the same bytes and the same
S3 ETag, so an unchanged model does not look like a new one.

Standard library only: training.package writes archives with it on the training instance, and the
serving-archive Lambda function (functions/serving_archive.py) rewrites them with it, without torch.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HANDLER_MEMBER = "code/inference.py"  # where the serving toolkit reads the handler
REQUIREMENTS_MEMBER = "code/requirements.txt"  # what it pip-installs; every archive of this app has it


@dataclass(frozen=True)
class Stream:
    """Content of a known size read from an open file: a member of another archive."""

    size: int
    reader: IO[bytes]


Source = Path | bytes | Stream | None  # a file, generated content, a stream, or None for a directory


def tar_info(name: str, source: Source) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if source is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = _size(source)
        info.mode = 0o644
    return info


def _size(source: Path | bytes | Stream) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Stream):
        return source.size
    return source.stat().st_size


def add_member(tar: tarfile.TarFile, name: str, source: Source) -> None:
    info = tar_info(name, source)
    if source is None:
        tar.addfile(info)
    elif isinstance(source, bytes):
        tar.addfile(info, io.BytesIO(source))
    elif isinstance(source, Stream):
        tar.addfile(info, source.reader)
    else:
        with source.open("rb") as handle:
            tar.addfile(info, handle)


def write_archive(members: dict[str, Source], output: Path) -> Path:
    """Writes `output` through a temporary file, so a failure leaves no partial archive."""
    partial = output.with_name(output.name + ".partial")
    try:
        with (
            partial.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, source in sorted(members.items(), key=lambda member: member[0]):
                add_member(tar, name, source)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output
