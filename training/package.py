"""Builds model.tar.gz in the layout a SageMaker PyTorch endpoint loads.

    python -m training.package --model-dir out/model --code-dir inference --output model.tar.gz \
        --wheels DIR                # the locked wheels for the endpoint (training/wheels.py)

Model and tokenizer files sit at the archive root, the handler in code/: code/inference.py, the
code/requirements.txt the serving container pip-installs at start (offline: `--no-index`, from the
wheels in code/wheels/), and TorchServe's per-model settings (MAR-INF/MANIFEST.json naming
model-config.yaml). Without --wheels the archive has no code/wheels/: it then serves only where the
pins are already installed, such as this project's venv (`make demo`). Only model files the endpoint
reads go in (SERVING_FILES): Trainer's training_args.bin, a pickle the endpoint never opens and pickle
scanners flag, stays out, as would optimizer state or anything else left in the model directory.
One file is built here: the int8 ONNX graph that `inferenceMode=int8` serves (training.onnx_export).

With --no-handler the result is a weights archive, the one the training instance uploads: the
inference stack's serving-archive resource (functions/serving_archive.py) adds each deploy's handler
to it, so a handler change reaches the endpoint without retraining.

The archive is deterministic (training.archive_format): the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from training import wheels as wheel_set
from training.archive_format import HANDLER_MEMBER, REQUIREMENTS_MEMBER, Source, write_archive
from training.onnx_export import INT8_FILE, export_int8

HANDLER, REQUIREMENTS = "inference.py", "requirements.txt"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")
# What from_pretrained reads for a config, weights and tokenizer: the only model files that ship.
SERVING_FILES = frozenset(
    {
        "config.json",
        *WEIGHT_FILES,
        *WEIGHT_INDEXES,
        *TOKENIZER_FILES,
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "merges.txt",
    }
)
WEIGHT_SHARD = re.compile(r"(model|pytorch_model)-\d{5}-of-\d{5}\.(safetensors|bin)")


def is_serving_file(name: str) -> bool:
    return name in SERVING_FILES or WEIGHT_SHARD.fullmatch(name) is not None


# TorchServe reads MAR-INF/MANIFEST.json in the model directory and, through it, a model config. Name
# and version are the ones the serving toolkit registers (its SAGEMAKER_TS_* settings key on them);
# no handler, so the toolkit's stays. maxRetryTimeoutInSec 0: a worker whose model fails to load is
# not retried and /ping answers 500 from then on, where TorchServe's default retries for 5 minutes
# and keeps answering 200 meanwhile.
TORCHSERVE_CONFIG = "MAR-INF/model-config.yaml"
TORCHSERVE_MANIFEST = {
    "runtime": "python",
    "model": {"modelName": "model", "modelVersion": "1.0", "configFile": TORCHSERVE_CONFIG},
}


class PackageError(ValueError):
    """The model or code directory lacks something the endpoint needs; the message says what."""


def check_model_dir(model_dir: Path) -> None:
    """Refuses a directory the endpoint could not load: no config, no (complete) weights, no tokenizer."""
    if not model_dir.is_dir():
        raise PackageError(f"model directory {model_dir} does not exist")
    present = {path.name for path in model_dir.iterdir()}
    if "config.json" not in present:
        raise PackageError(f"model directory {model_dir} has no config.json")
    indexes = [name for name in WEIGHT_INDEXES if name in present]
    if indexes:
        shards = set(json.loads((model_dir / indexes[0]).read_text())["weight_map"].values())
        missing = sorted(shards - present)
        if missing:
            raise PackageError(f"model directory {model_dir} lacks weight shard(s) {', '.join(missing)}")
    elif not present.intersection(WEIGHT_FILES):
        raise PackageError(f"model directory {model_dir} has no weights ({' or '.join(WEIGHT_FILES)})")
    if "tokenizer_config.json" not in present or not present.intersection(TOKENIZER_FILES):
        raise PackageError(
            f"model directory {model_dir} has no tokenizer (tokenizer_config.json and one of "
            f"{', '.join(TOKENIZER_FILES)})"
        )


def check_code_dir(code_dir: Path, handler: bool = True) -> None:
    """A weights archive (handler=False) takes only the requirements from the code directory."""
    required = (HANDLER, REQUIREMENTS) if handler else (REQUIREMENTS,)
    missing = [name for name in required if not (code_dir / name).is_file()]
    if missing:
        raise PackageError(f"code directory {code_dir} has no {', '.join(missing)}")


def archive_members(model_dir: Path, code_dir: Path, handler: bool = True) -> dict[str, Source]:
    """The model, the requirements and (with `handler`) the handler.

    Only the top-level serving files of the model directory: save_pretrained writes a flat directory,
    and this keeps stray subdirectories (an old code/ for one) and training leftovers out of the archive.
    """
    members: dict[str, Source] = {
        path.name: path for path in model_dir.iterdir() if path.is_file() and is_serving_file(path.name)
    }
    members["code"] = None
    if handler:
        members[HANDLER_MEMBER] = code_dir / HANDLER
    pins = wheel_set.requirement_pins(code_dir / REQUIREMENTS)
    members[REQUIREMENTS_MEMBER] = wheel_set.offline_requirements(pins).encode()
    return members


def serving_members() -> dict[str, Source]:
    """TorchServe's per-model settings (see TORCHSERVE_MANIFEST)."""
    return {
        "MAR-INF": None,
        "MAR-INF/MANIFEST.json": json.dumps(TORCHSERVE_MANIFEST, sort_keys=True).encode(),
        TORCHSERVE_CONFIG: b"maxRetryTimeoutInSec: 0\n",
    }


def wheel_members(wheels: Sequence[Path]) -> dict[str, Source]:
    """The wheels code/requirements.txt installs from, if any."""
    if not wheels:
        return {}
    return {"code/wheels": None, **{f"code/wheels/{wheel.name}": wheel for wheel in wheels}}


def build_model_archive(
    model_dir: Path, code_dir: Path, output: Path, wheels: Sequence[Path] | None = None, handler: bool = True
) -> Path:
    """Writes the archive to `output` through a temporary file, so a failure leaves no partial archive.

    `wheels` must already be the checked set (`wheel_set.locked_wheels` and `wheel_set.check`);
    without `handler`, a weights archive (no code/inference.py)."""
    check_model_dir(model_dir)
    check_code_dir(code_dir, handler)
    if output.resolve().parent == model_dir.resolve():
        raise PackageError(f"output {output} must be outside the model directory it archives")
    with tempfile.TemporaryDirectory(prefix="package-") as workdir:
        built = {INT8_FILE: export_int8(model_dir, Path(workdir) / INT8_FILE)}  # for inferenceMode=int8
        members = {
            **archive_members(model_dir, code_dir, handler),
            **built,
            **serving_members(),
            **wheel_members(wheels or []),
        }
        return write_archive(members, output)


def endpoint_wheels(
    directory: Path,
    platform: wheel_set.Platform,
    requirements: Path,
    lock: Path = wheel_set.LOCK,
    download: bool = False,
) -> list[Path]:
    """The wheels of `lock` in `directory` (with `download`, fetched if any is missing), proven to
    install the pins of `requirements` offline on `platform`."""
    try:
        try:
            wheels = wheel_set.locked_wheels(directory, lock)
        except wheel_set.WheelError:
            if not download:
                raise
            wheels = wheel_set.locked_wheels(wheel_set.download(directory, platform, lock), lock)
        wheel_set.check(wheels, platform, requirements)
    except wheel_set.WheelError as error:
        raise PackageError(str(error)) from None
    return wheels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.package", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="training's --output-dir/model")
    parser.add_argument(
        "--code-dir", type=Path, default=Path("inference"), help="holds inference.py and requirements.txt"
    )
    parser.add_argument("--output", type=Path, default=Path("model.tar.gz"))
    parser.add_argument("--wheels", type=Path, help="directory with the locked wheels for code/wheels/")
    parser.add_argument("--download", action="store_true", help="download missing locked wheels into --wheels")
    parser.add_argument("--lock", type=Path, default=wheel_set.LOCK, help="the wheel set (training/wheels.py)")
    parser.add_argument(
        "--platform", choices=sorted(wheel_set.PLATFORMS), default=wheel_set.ENDPOINT.name, help="where they install"
    )
    parser.add_argument(
        "--no-handler",
        dest="handler",
        action="store_false",
        help="a weights archive, without code/inference.py (the inference stack adds the handler)",
    )
    args = parser.parse_args(argv)
    try:
        # Checked before any download: a wrong directory fails at once, offline.
        check_model_dir(args.model_dir)
        check_code_dir(args.code_dir, args.handler)
        wheels = None
        if args.wheels:
            platform, requirements = wheel_set.PLATFORMS[args.platform], args.code_dir / REQUIREMENTS
            wheels = endpoint_wheels(args.wheels, platform, requirements, args.lock, args.download)
        output = build_model_archive(args.model_dir, args.code_dir, args.output, wheels, args.handler)
    except PackageError as error:
        raise SystemExit(f"error: {error}") from None
    with output.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    print(f"{output}: {output.stat().st_size} bytes, sha256 {sha256}, {len(wheels or [])} wheels")


if __name__ == "__main__":
    main()
