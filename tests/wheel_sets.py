"""Wheel sets for tests: tiny wheels made here (offline), and the real locked sets cached in build/wheels.

The real sets come from the package index once (about 45 MB each; pip checks every file against
inference/requirements.lock) and stay in build/wheels/<platform>, the directory `make package` uses
for the endpoint's, so later runs need no network.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

from training import wheels
from training.package import endpoint_wheels

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "build" / "wheels"


def make_wheel(
    directory: Path, name: str, version: str, tag: str = "py3-none-any", requires: Iterable[str] = ()
) -> Path:
    """A minimal valid wheel: one empty module and the metadata pip reads."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        f"{dist_info}/METADATA": "".join(
            [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", *(f"Requires-Dist: {r}\n" for r in requires)]
        ).encode(),
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = [f"{path},sha256={_urlsafe_sha256(data)},{len(data)}" for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, data in files.items():
            archive.writestr(name_in_zip, data)
    return path


def lock_for(path: Path, wheel_files: Iterable[Path]) -> Path:
    """A lock that pins exactly these wheel files."""
    lines = []
    for wheel in wheel_files:
        name, version = wheel.name.split("-")[:2]
        lines.append(wheels.Pin(name, version, frozenset({hashlib.sha256(wheel.read_bytes()).hexdigest()})).line())
    path.write_text("\n".join(lines) + "\n")
    return path


def locked_set(platform: wheels.Platform) -> list[Path]:
    """The project's locked wheels for `platform`, checked to install offline there."""
    return endpoint_wheels(CACHE / platform.name, platform, wheels.REQUIREMENTS, download=True)


def _urlsafe_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
