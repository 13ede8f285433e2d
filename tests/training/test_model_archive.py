"""model.tar.gz: SageMaker layout with the wheels and TorchServe's settings, refusal of incomplete inputs
with one error line and no archive, identical bytes for identical inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.wheel_sets import lock_for, make_wheel
from training.package import PackageError, build_model_archive, main

REAL_CODE_DIR = Path(__file__).resolve().parents[2] / "inference"
X86 = "py3-none-manylinux_2_28_x86_64"


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A stand-in handler directory, plus a file the endpoint does not need."""
    directory = tmp_path / "code-src"
    directory.mkdir()
    (directory / "inference.py").write_text("def model_fn(model_dir):\n    return model_dir\n")
    (directory / "requirements.txt").write_text("# what the handler needs\nalpha==1.0\n")
    (directory / "notes.md").write_text("not shipped\n")
    return directory


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    """A wheel set for the stand-in handler: alpha needs beta."""
    directory = tmp_path / "wheels"
    make_wheel(directory, "alpha", "1.0", requires=["beta"])
    make_wheel(directory, "beta", "2.0")
    return directory


@pytest.fixture
def lock(wheel_dir: Path, tmp_path: Path) -> Path:
    return lock_for(tmp_path / "requirements.lock", sorted(wheel_dir.glob("*.whl")))


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
    torchserve = ["MAR-INF", "MAR-INF/MANIFEST.json", "MAR-INF/model-config.yaml"]
    built = ["model.int8.onnx"]
    assert names == sorted([*model_files, *built, *torchserve, "code", "code/inference.py", "code/requirements.txt"])
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
    unpacked = tmp_path / "unpacked"
    assert (unpacked / "code" / "inference.py").read_text() == (code_dir / "inference.py").read_text()
    model = AutoModelForSequenceClassification.from_pretrained(unpacked)
    assert model.config.id2label[0] == "negative"
    assert AutoTokenizer.from_pretrained(unpacked)("covid cases")["input_ids"]


def test_a_trained_models_archive_holds_only_what_serving_reads(trained: Path, code_dir: Path, tmp_path: Path) -> None:
    """The shared run's model/ as Trainer saved it, training_args.bin (a pickle) included."""
    assert (trained / "model" / "training_args.bin").is_file()
    with tarfile.open(build_model_archive(trained / "model", code_dir, tmp_path / "model.tar.gz")) as tar:
        names = tar.getnames()
    assert sorted(name for name in names if name.split("/")[0] not in ("code", "MAR-INF")) == [
        "config.json",
        "model.int8.onnx",  # exported at package time
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]


@pytest.fixture
def sharded_model(model_copy: Path) -> list[str]:
    """The copy saved again as several weight shards and their index, as transformers saves a large model."""
    model = AutoModelForSequenceClassification.from_pretrained(model_copy)
    (model_copy / "model.safetensors").unlink()
    model.save_pretrained(model_copy, max_shard_size="50KB")
    shards = sorted(path.name for path in model_copy.glob("model-*.safetensors"))
    assert len(shards) > 1
    return shards


def test_training_leftovers_stay_out_and_weight_shards_go_in(
    model_copy: Path, sharded_model: list[str], code_dir: Path, tmp_path: Path
) -> None:
    for leftover in ("training_args.bin", "optimizer.pt", "rng_state.pth", "trainer_state.json", "notes.txt"):
        (model_copy / leftover).write_bytes(b"not for serving")
    with tarfile.open(build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")) as tar:
        names = set(tar.getnames())
    assert {*sharded_model, "model.safetensors.index.json", "config.json"} <= names
    assert not names & {"training_args.bin", "optimizer.pt", "rng_state.pth", "trainer_state.json", "notes.txt"}


def test_requirements_install_offline_from_the_wheels(
    model_copy: Path, code_dir: Path, wheel_dir: Path, tmp_path: Path
) -> None:
    wheels = sorted(wheel_dir.glob("*.whl"))
    with tarfile.open(build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz", wheels)) as tar:
        requirements = tar.extractfile("code/requirements.txt").read().decode()  # type: ignore[union-attr]
        shipped = {name for name in tar.getnames() if name.startswith("code/wheels/")}
    assert requirements.splitlines() == ["--no-index", "--find-links wheels", "alpha==1.0"]
    assert shipped == {f"code/wheels/{wheel.name}" for wheel in wheels}


def test_torchserve_does_not_retry_a_model_that_fails_to_load(model_copy: Path, code_dir: Path, tmp_path: Path) -> None:
    """The toolkit registers model "1.0"; the manifest must keep that, and name no handler of its own."""
    with tarfile.open(build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")) as tar:
        manifest = json.load(tar.extractfile("MAR-INF/MANIFEST.json"))  # type: ignore[arg-type]
        config = tar.extractfile(manifest["model"]["configFile"]).read().decode()  # type: ignore[union-attr]
    assert manifest["model"]["modelName"] == "model"
    assert manifest["model"]["modelVersion"] == "1.0"
    assert "handler" not in manifest["model"]
    assert config.splitlines() == ["maxRetryTimeoutInSec: 0"]


def test_same_inputs_give_identical_bytes(model_copy: Path, code_dir: Path, wheel_dir: Path, tmp_path: Path) -> None:
    wheels = sorted(wheel_dir.glob("*.whl"))
    first = build_model_archive(model_copy, code_dir, tmp_path / "first.tar.gz", wheels).read_bytes()
    for path in [*model_copy.iterdir(), *code_dir.iterdir(), *wheels]:
        os.utime(path, (1_700_000_000, 1_700_000_000))  # a fresh checkout or sync changes mtimes
    second = build_model_archive(model_copy, code_dir, tmp_path / "second.tar.gz", wheels).read_bytes()
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


def test_sharded_weights_need_every_shard(
    model_copy: Path, sharded_model: list[str], code_dir: Path, tmp_path: Path
) -> None:
    last = model_copy / sharded_model[-1]
    kept = last.rename(tmp_path / last.name)
    with pytest.raises(PackageError, match=rf"lacks weight shard\(s\) {re.escape(last.name)}$"):
        build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")
    kept.rename(last)
    assert build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz").is_file()


def test_code_dir_without_handler_is_refused(model_copy: Path, code_dir: Path, tmp_path: Path) -> None:
    (code_dir / "inference.py").unlink()
    with pytest.raises(PackageError, match=r"code directory .* has no inference.py"):
        build_model_archive(model_copy, code_dir, tmp_path / "model.tar.gz")


def test_cli_writes_the_archive_with_the_checked_wheels(
    model_copy: Path, code_dir: Path, wheel_dir: Path, lock: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model.tar.gz"
    main(cli(model_copy, code_dir, output, "--wheels", str(wheel_dir), "--lock", str(lock)))
    assert f"{output}: " in capsys.readouterr().out
    with tarfile.open(output) as tar:
        assert "code/wheels/beta-2.0-py3-none-any.whl" in tar.getnames()


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (["model.safetensors"], r"error: model directory .* has no weights \(model.safetensors or pytorch_model.bin\)"),
        (["tokenizer.json", "vocab.json"], r"error: model directory .* has no tokenizer"),
        (["config.json"], r"error: model directory .* has no config.json"),
    ],
)
def test_cli_refuses_an_incomplete_model_with_one_line_and_writes_nothing(
    model_copy: Path, code_dir: Path, wheel_dir: Path, lock: Path, tmp_path: Path, remove: list[str], message: str
) -> None:
    for name in remove:
        (model_copy / name).unlink()
    with pytest.raises(SystemExit, match=message) as refused:
        main(cli(model_copy, code_dir, tmp_path / "model.tar.gz", "--wheels", str(wheel_dir), "--lock", str(lock)))
    assert "\n" not in str(refused.value.code)
    assert not list(tmp_path.glob("model.tar.gz*"))


def test_cli_refuses_a_lock_that_does_not_install_on_the_endpoint_and_names_the_package(
    model_copy: Path, code_dir: Path, tmp_path: Path
) -> None:
    """beta resolved for x86 only: the Graviton image could not install it."""
    wheel_dir = tmp_path / "x86-wheels"
    made = [make_wheel(wheel_dir, "alpha", "1.0", requires=["beta"]), make_wheel(wheel_dir, "beta", "2.0", tag=X86)]
    lock = lock_for(tmp_path / "requirements.lock", made)
    refusal = r"^error: the wheel set does not install offline for endpoint: no wheel for beta$"
    with pytest.raises(SystemExit, match=refusal):
        main(cli(model_copy, code_dir, tmp_path / "model.tar.gz", "--wheels", str(wheel_dir), "--lock", str(lock)))
    assert not list(tmp_path.glob("model.tar.gz*"))


def test_cli_refuses_a_wheel_directory_without_the_locked_set(
    model_copy: Path, code_dir: Path, wheel_dir: Path, lock: Path, tmp_path: Path
) -> None:
    (wheel_dir / "beta-2.0-py3-none-any.whl").unlink()
    with pytest.raises(SystemExit, match=r"error: .* has no wheel for beta==2.0 matching requirements.lock"):
        main(cli(model_copy, code_dir, tmp_path / "model.tar.gz", "--wheels", str(wheel_dir), "--lock", str(lock)))
    with pytest.raises(SystemExit, match=r"error: model directory .*missing does not exist"):
        main(cli(tmp_path / "missing", code_dir, tmp_path / "model.tar.gz"))
    assert not list(tmp_path.glob("model.tar.gz*"))


def cli(model_dir: Path, code_dir: Path, output: Path, *extra: str) -> list[str]:
    return ["--model-dir", str(model_dir), "--code-dir", str(code_dir), "--output", str(output), *extra]


@pytest.mark.skipif(not (REAL_CODE_DIR / "inference.py").is_file(), reason="inference/ not written yet")
def test_the_project_handler_packages(model_copy: Path, tmp_path: Path) -> None:
    with tarfile.open(build_model_archive(model_copy, REAL_CODE_DIR, tmp_path / "model.tar.gz")) as tar:
        assert {"code/inference.py", "code/requirements.txt"} <= set(tar.getnames())


def test_a_weights_archive_is_the_full_one_without_the_handler(
    model_copy: Path, code_dir: Path, tmp_path: Path
) -> None:
    """--no-handler: the handler is added at deploy (functions/serving_archive.py), so none is needed here."""
    main(cli(model_copy, code_dir, tmp_path / "model.tar.gz"))
    main(cli(model_copy, code_dir, tmp_path / "weights.tar.gz", "--no-handler"))
    with tarfile.open(tmp_path / "model.tar.gz") as full, tarfile.open(tmp_path / "weights.tar.gz") as weights:
        full_names, weights_names = full.getnames(), weights.getnames()
    assert "code/inference.py" in full_names
    assert weights_names == [name for name in full_names if name != "code/inference.py"]
    (code_dir / "inference.py").unlink()
    main(cli(model_copy, code_dir, tmp_path / "without.tar.gz", "--no-handler"))
    assert (tmp_path / "without.tar.gz").read_bytes() == (tmp_path / "weights.tar.gz").read_bytes()
