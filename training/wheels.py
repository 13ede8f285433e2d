"""The endpoint's Python packages as wheels inside model.tar.gz, so the endpoint starts without network.

    python -m training.wheels lock                                  # after editing inference/requirements.txt
    python -m training.wheels download --dest DIR [--platform local]

The inference image lacks transformers and its dependencies, and the serving toolkit pip-installs
`code/requirements.txt` at every start. The archive therefore carries them:

- `inference/requirements.txt`: the pins the handler needs, edited by people.
- `inference/requirements.lock`: their whole dependency closure, one `name==version --hash=...` a line,
  written by `lock` (which pip resolves for both platforms below) and never edited by hand. Its header
  holds a digest of those pins, so a test notices a pin changed without a new lock.
- `code/wheels/`: the locked wheels for the image's platform, downloaded where there is network
  (the training instance's package step, `make package`), checked against the lock's hashes.
- `code/requirements.txt`: `--no-index`, `--find-links wheels`, then the pins. pip resolves a relative
  `--find-links` against the requirements file's own directory, so the same file works on the
  endpoint (/opt/ml/model/code) and on the local server. On an image that already has a package at
  a suitable version, pip keeps it; the wheels only fill what is missing.

`check` proves the set installs offline for a platform with pip's own resolver (a dry run with
`--no-index` into an empty target, so nothing already installed here counts). Every failure raises
`WheelError` with one line that names the package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "inference" / "requirements.txt"
LOCK = ROOT / "inference" / "requirements.lock"
# Shipped as code/requirements.txt ahead of the pins: install from code/wheels only, never an index.
OFFLINE_OPTIONS = ("--no-index", "--find-links wheels")
# The image provides these; a lock that pulls them in would ship a second, wrong copy.
IMAGE_PACKAGES = frozenset({"torch"})
_DIGEST_HEADER = "# sha256 of the pins in inference/requirements.txt: "
_PIP_SOURCES = frozenset({"PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT"})


class WheelError(ValueError):
    """The lock or the wheel set does not hold what the endpoint needs; the message says which package."""


@dataclass(frozen=True)
class Platform:
    """A target for pip's cross-platform options: the wheels must install there, not here."""

    name: str
    python_version: str
    machine: str  # one of the manylinux machine suffixes: aarch64, x86_64

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def pip_options(self) -> list[str]:
        """Binary wheels only, for this interpreter and both manylinux tag families: some projects
        publish only manylinux2014 wheels (tokenizers), others only manylinux_2_28 (hf-xet)."""
        return [
            "--only-binary=:all:",
            *("--python-version", self.python_version, "--implementation", "cp", "--abi", self.abi),
            *("--platform", f"manylinux2014_{self.machine}", "--platform", f"manylinux_2_28_{self.machine}"),
        ]


# The inference image: pytorch-inference-arm64 2.6 (Graviton, CPython 3.12).
ENDPOINT = Platform("endpoint", "3.12", "aarch64")
# This project's development and CI machines (x86_64, Python 3.11): where tests install the set.
LOCAL = Platform("local", "3.11", "x86_64")
PLATFORMS = {platform.name: platform for platform in (ENDPOINT, LOCAL)}


@dataclass(frozen=True)
class Pin:
    """One locked distribution: every file pip may use for it has one of `hashes`."""

    name: str
    version: str
    hashes: frozenset[str]

    @property
    def key(self) -> str:
        return canonical(self.name)

    def line(self) -> str:
        hashes = (f"--hash=sha256:{value}" for value in sorted(self.hashes))
        return " ".join([f"{self.name}=={self.version}", *hashes])


def canonical(name: str) -> str:
    """PEP 503 name: `PyYAML`, `pyyaml` and `py_yaml` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path = REQUIREMENTS) -> list[str]:
    """The `name==version` lines of a requirements file, without comments and options."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def pins_digest(path: Path = REQUIREMENTS) -> str:
    """Identifies the pins of a requirements file, whatever its comments say."""
    return hashlib.sha256("\n".join(requirement_pins(path)).encode()).hexdigest()


def read_lock(path: Path = LOCK) -> list[Pin]:
    pins = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *options = line.split()
        name, version = requirement.split("==")
        hashes = frozenset(option.removeprefix("--hash=sha256:") for option in options)
        pins.append(Pin(name, version, hashes))
    return pins


def locked_digest(path: Path = LOCK) -> str:
    """The `pins_digest` recorded when the lock was written."""
    for line in path.read_text().splitlines():
        if line.startswith(_DIGEST_HEADER):
            return line.removeprefix(_DIGEST_HEADER).strip()
    raise WheelError(f"{path} has no '{_DIGEST_HEADER.strip()}' line; regenerate it with `make lock`")


def offline_requirements(pins: Iterable[str]) -> str:
    """The code/requirements.txt the archive ships."""
    return "\n".join([*OFFLINE_OPTIONS, *pins]) + "\n"


def _pip(*args: str, isolated: bool = False) -> subprocess.CompletedProcess[str]:
    """`isolated` hides this machine's pip configuration (its find-links would count as wheels)."""
    env = dict(os.environ)
    if isolated:
        env = {key: value for key, value in env.items() if key not in _PIP_SOURCES}
        env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False, env=env)


def _pip_failure(result: subprocess.CompletedProcess[str], what: str) -> WheelError:
    """pip's own reason as one line, naming the package it could not place when it says which."""
    output = result.stderr + result.stdout
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        return WheelError(f"{what}: no wheel for {missing.group(1).rstrip(';')}")
    errors = [line.removeprefix("ERROR: ").strip() for line in output.splitlines() if line.startswith("ERROR:")]
    last = errors or output.strip().splitlines() or [f"pip exited with {result.returncode}"]
    return WheelError(f"{what}: {last[-1]}")


def resolve(requirements: Path, platform: Platform) -> dict[str, Pin]:
    """pip's resolution of the whole closure for `platform`, from the index (needs network)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        result = _pip(
            *("install", "--dry-run", "--quiet", "--target", str(Path(scratch) / "target")),
            *("--report", str(report), *platform.pip_options(), "-r", str(requirements)),
        )
        if result.returncode != 0:
            raise _pip_failure(result, f"{requirements.name} does not resolve for {platform.name}")
        installs = json.loads(report.read_text())["install"]
    pins = {}
    for item in installs:
        metadata, archive = item["metadata"], item["download_info"]["archive_info"]
        pin = Pin(metadata["name"], metadata["version"], frozenset({archive["hashes"]["sha256"]}))
        pins[pin.key] = pin
    return pins


def write_lock(requirements: Path = REQUIREMENTS, output: Path = LOCK) -> list[Pin]:
    """Resolves for every platform and writes one lock that all of them satisfy, or says why not."""
    merged: dict[str, Pin] = {}
    for platform in PLATFORMS.values():
        for key, pin in resolve(requirements, platform).items():
            if key in IMAGE_PACKAGES:
                raise WheelError(f"{requirements.name} pulls in {pin.name}, which the inference image provides")
            known = merged.get(key)
            if known is not None and known.version != pin.version:
                raise WheelError(f"{pin.name} resolves to {known.version} on one platform, {pin.version} on another")
            merged[key] = Pin(pin.name, pin.version, pin.hashes | (known.hashes if known else frozenset()))
    pins = [merged[key] for key in sorted(merged)]
    header = [
        "# The endpoint's wheel set: the whole closure of inference/requirements.txt. Generated by",
        "# `make lock` (python -m training.wheels lock); do not edit.",
        f"{_DIGEST_HEADER}{pins_digest(requirements)}",
    ]
    output.write_text("\n".join([*header, *(pin.line() for pin in pins)]) + "\n")
    return pins


def download(destination: Path, platform: Platform = ENDPOINT, lock: Path = LOCK) -> Path:
    """Fetches every locked wheel for `platform` into `destination`; pip checks each file's hash."""
    destination.mkdir(parents=True, exist_ok=True)
    result = _pip(
        *("download", "--quiet", "--no-deps", "--dest", str(destination)),
        *(*platform.pip_options(), "-r", str(lock)),
    )
    if result.returncode != 0:
        raise _pip_failure(result, f"{lock.name} does not download for {platform.name}")
    return destination


def locked_wheels(directory: Path, lock: Path = LOCK) -> list[Path]:
    """The wheel of every locked package in `directory`, each matching one of the lock's hashes."""
    by_key: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(directory.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        by_key.setdefault((canonical(name), version), []).append(path)
    chosen = []
    for pin in read_lock(lock):
        candidates = [path for path in by_key.get((pin.key, pin.version), []) if _sha256(path) in pin.hashes]
        if not candidates:
            raise WheelError(
                f"{directory} has no wheel for {pin.name}=={pin.version} matching {lock.name}; "
                "download the set first (make package does)"
            )
        chosen.extend(candidates)
    return chosen


def check(wheels: Iterable[Path], platform: Platform = ENDPOINT, requirements: Path = REQUIREMENTS) -> None:
    """An offline dry-run install of the shipped code/requirements.txt beside exactly these wheels,
    for `platform`, into an empty target: proves the set is complete on its own."""
    with tempfile.TemporaryDirectory() as scratch:
        code = Path(scratch) / "code"
        (code / "wheels").mkdir(parents=True)
        for wheel in wheels:
            (code / "wheels" / wheel.name).symlink_to(wheel.resolve())
        (code / "requirements.txt").write_text(offline_requirements(requirement_pins(requirements)))
        result = _pip(
            *("install", "--dry-run", "--quiet", "--target", str(Path(scratch) / "target")),
            *(*platform.pip_options(), "-r", str(code / "requirements.txt")),
            isolated=True,
        )
    if result.returncode != 0:
        raise _pip_failure(result, f"the wheel set does not install offline for {platform.name}")


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.wheels", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lock", help="resolve inference/requirements.txt into inference/requirements.lock")
    fetch = commands.add_parser("download", help="download the locked wheels for a platform")
    fetch.add_argument("--dest", type=Path, required=True)
    fetch.add_argument("--platform", choices=sorted(PLATFORMS), default=ENDPOINT.name)
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            print(f"{LOCK}: {len(write_lock())} packages")
        else:
            wheels = locked_wheels(download(args.dest, PLATFORMS[args.platform]))
            check(wheels, PLATFORMS[args.platform])
            print(f"{args.dest}: {len(wheels)} wheels for {args.platform}")
    except WheelError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
