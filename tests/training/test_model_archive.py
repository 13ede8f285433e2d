"""model.tar.gz: SageMaker layout, refusal of incomplete inputs, identical bytes for identical inputs."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training.package import PackageError, build_model_archive, main

REAL_CODE_DIR = Path(__file__).resolve().parents[2] / "inference"


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A stand-in handler directory, plus a file the endpoint does not need."""
    directory = tmp_path / "code-src"
    directory.mkdir()
    (directory / "inference.py").write_text("def model_fn(model_dir):\n    return model_dir\n")
    (directory / "requirements.txt").write_text("transformers==5.24.0\n")
    (directory / "notes.md").write_text("not shipped\n")
    return directory


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model, free to be broken."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def test_layout_is_model_at_root_and_handler_in_code(model_copy: Path, code_dir: Path, tmp_path: Path) -> None:
    archive = build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        tar.extractall(tmp_path / "unpacked", filter="data")
    names = [member.name for member in members]
    model_files = sorted(path.name for path in model_copy.iterdir())
    assert names == sorted([*model_files, "model.int8.onnx", "code", "code/inference.py", "code/requirements.txt"])
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
    unpacked = tmp_path / "unpacked"
    assert (unpacked / "code" / "inference.py").read_text() == (code_dir / "inference.py").read_text()
    model = AutoModelForSequenceClassification.from_pretrained(unpacked)
    assert model.config.id2label[0] == "negative"
    assert AutoTokenizer.from_pretrained(unpacked)("covid cases")["input_ids"]


def test_same_inputs_give_identical_bytes(model_copy: Path, code_dir: Path, tmp_path: Path) -> None:
    first = build_model_archive(model_copy, code_dir, tmp_path / "first.tar.gz").read_bytes()
    for path in [*model_copy.iterdir(), *code_dir.iterdir()]:
        os.utime(path, (1_700_000_000, 1_700_000_000))  # a fresh checkout or sync changes mtimes
    second = build_model_archive(model_copy, code_dir, tmp_path / "second.tar.gz").read_bytes()
    assert first == second
    assert first[4:8] == b"\0\0\0\0"  # no gzip timestamp


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (["config.json"], "has no config.json"),
        (["model.safetensors"], "has no weights (model.safetensors or pytorch_model.bin)"),
        (["tokenizer_config.json"], "has no tokenizer"),
        (["tokenizer.json", "vocab.json"], "has no tokenizer"),
    ],
)
def test_incomplete_model_dir_is_refused(
    model_copy: Path, code_dir: Path, tmp_path: Path, remove: list[str], message: str
) -> None:
    for name in remove:
        (model_copy / name).unlink()
    with pytest.raises(PackageError) as refused:
        build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")
    assert message in str(refused.value)
    assert not list(tmp_path.glob("model.tar.gz*"))


def test_sharded_weights_need_every_shard(model_copy: Path, code_dir: Path, tmp_path: Path) -> None:
    (model_copy / "model.safetensors").rename(model_copy / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (model_copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(PackageError, match=r"lacks weight shard\(s\) model-00002-of-00002.safetensors"):
        build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")
    (model_copy / "model-00002-of-00002.safetensors").write_bytes(b"")
    assert build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz").is_file()


def test_code_dir_without_handler_is_refused(model_copy: Path, code_dir: Path, tmp_path: Path) -> None:
    (code_dir / "inference.py").unlink()
    with pytest.raises(PackageError, match=r"code directory .* has no inference.py"):
        build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")


def test_cli_writes_the_archive_or_exits_with_the_reason(
    model_copy: Path, code_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model.tar.gz"
    main(["--model-dir", str(model_copy), "--code-dir", str(code_dir), "--output", str(output)])
    assert str(output) in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"error: model directory .*missing does not exist"):
        main(["--model-dir", str(tmp_path / "missing"), "--code-dir", str(code_dir), "--output", str(output)])


@pytest.mark.skipif(not (REAL_CODE_DIR / "inference.py").is_file(), reason="inference/ not written yet")
def test_the_project_handler_packages(model_copy: Path, tmp_path: Path) -> None:
    with tarfile.open(build_model_archive(model_copy, REAL_CODE_DIR, tmp_path / "model.tar.gz")) as tar:
        assert {"code/inference.py", "code/requirements.txt"} <= set(tar.getnames())
