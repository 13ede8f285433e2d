"""Builds model.tar.gz in the layout a SageMaker PyTorch endpoint loads.

    python -m training.package --model-dir out/model --code-dir inference --output model.tar.gz

Model and tokenizer files sit at the archive root, the handler in code/ (code/inference.py and the
code/requirements.txt the serving container pip-installs at start). One file is built here: the
int8 ONNX graph that `inferenceMode=int8` serves (training.onnx_export). The archive is deterministic:
sorted entries, zero mtimes and owners, no gzip timestamp, so the same model gives the same bytes
and the same S3 ETag, and an unchanged model does not look like a new one.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from training.onnx_export import INT8_FILE, export_int8

CODE_FILES = ("inference.py", "requirements.txt")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")


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


def check_code_dir(code_dir: Path) -> None:
    missing = [name for name in CODE_FILES if not (code_dir / name).is_file()]
    if missing:
        raise PackageError(f"code directory {code_dir} has no {', '.join(missing)}")


def archive_members(model_dir: Path, code_dir: Path, built: dict[str, Path]) -> Iterator[tuple[str, Path | None]]:
    """(name in archive, source file or None for a directory), in sorted order.

    Only the top-level files of the model directory: save_pretrained writes a flat directory, and
    this keeps stray subdirectories (an old code/ for one) out of the archive. `built` are the files
    made at package time, by archive name; they replace a model directory file of the same name.
    """
    members: dict[str, Path | None] = {path.name: path for path in model_dir.iterdir() if path.is_file()}
    members.update(built)
    members["code"] = None
    members.update({f"code/{name}": code_dir / name for name in CODE_FILES})
    yield from sorted(members.items())


def _tar_info(name: str, source: Path | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if source is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = source.stat().st_size
        info.mode = 0o644
    return info


def build_model_archive(model_dir: Path, code_dir: Path, output: Path) -> Path:
    """Writes the archive to `output` through a temporary file, so a failure leaves no partial archive."""
    check_model_dir(model_dir)
    check_code_dir(code_dir)
    if output.resolve().parent == model_dir.resolve():
        raise PackageError(f"output {output} must be outside the model directory it archives")
    with tempfile.TemporaryDirectory(prefix="package-") as workdir:
        built = {INT8_FILE: export_int8(model_dir, Path(workdir) / INT8_FILE)}  # for inferenceMode=int8
        return _write_archive(archive_members(model_dir, code_dir, built), output)


def _write_archive(members: Iterator[tuple[str, Path | None]], output: Path) -> Path:
    partial = output.with_name(output.name + ".partial")
    try:
        with (
            partial.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, source in members:
                info = _tar_info(name, source)
                if source is None:
                    tar.addfile(info)
                else:
                    with source.open("rb") as handle:
                        tar.addfile(info, handle)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.package", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="training's --output-dir/model")
    parser.add_argument("--code-dir", type=Path, default=Path("inference"), help="holds inference.py")
    parser.add_argument("--output", type=Path, default=Path("model.tar.gz"))
    args = parser.parse_args(argv)
    try:
        output = build_model_archive(args.model_dir, args.code_dir, args.output)
    except PackageError as error:
        raise SystemExit(f"error: {error}") from None
    with output.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    print(f"{output}: {output.stat().st_size} bytes, sha256 {sha256}")


if __name__ == "__main__":
    main()
