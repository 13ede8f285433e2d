"""A broken archive fails fast through the real toolkit, with a message in the server log naming the
problem. A model that cannot load turns /ping to 500 and TorchServe does not retry it, so /ping stays
500; a wheel set that does not install stops the server before TorchServe starts."""

from __future__ import annotations

import io
import re
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inference.inference import ONNX_INT8_FILE, PREPARERS
from inference.serve import LocalEndpoint, free_port, ping
from tests.wheel_sets import locked_set
from training import wheels
from training.package import build_model_archive

pytestmark = pytest.mark.slow

CODE_DIR = Path(__file__).resolve().parents[2] / "inference"
TOKENIZER_FILES = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"}
BROKEN_HANDLER = b"import module_the_image_lacks  # the handler raises at import\n"


def rewritten(model_tar: Path, output: Path, drop: set[str], replace: dict[str, bytes] | None = None) -> Path:
    """`model_tar` without the members in `drop` and with the contents in `replace`."""
    replace = replace or {}
    with tarfile.open(model_tar) as source, tarfile.open(output, "w:gz") as target:
        for member in source.getmembers():
            if member.name in drop:
                continue
            data = replace.get(member.name)
            if data is not None:
                member.size = len(data)
                target.addfile(member, io.BytesIO(data))
            else:
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return output


CASES: dict[str, tuple[Callable[[Path, Path], Path], dict[str, str], str]] = {
    "missing int8 graph": (  # the default mode's weights (the PyTorch modes': tests/inference/test_handler.py)
        lambda tar, out: rewritten(tar, out, {ONNX_INT8_FILE}),
        {},
        rf"ModelLoadError: cannot load the int8 model from \S+: INFERENCE_MODE=int8 needs {ONNX_INT8_FILE}",
    ),
    "missing tokenizer": (
        lambda tar, out: rewritten(tar, out, TOKENIZER_FILES),
        {},
        r"ModelLoadError: the tokenizer maps .* to unknown tokens only: the model directory lacks its tokenizer",
    ),
    "handler raises at import": (
        lambda tar, out: rewritten(tar, out, set(), {"code/inference.py": BROKEN_HANDLER}),
        {},
        r"ModuleNotFoundError: No module named 'module_the_image_lacks'",
    ),
    "unknown INFERENCE_MODE": (
        lambda tar, out: tar,
        {"INFERENCE_MODE": "fp64"},
        rf"ValueError: INFERENCE_MODE='fp64': expected one of {', '.join(PREPARERS)}",
    ),
}


@pytest.mark.parametrize(("make", "env", "message"), CASES.values(), ids=CASES)
def test_a_model_that_cannot_load_turns_ping_to_500_for_good_and_says_why(
    model_tar: Path, tmp_path: Path, make: Callable[[Path, Path], Path], env: dict[str, str], message: str
) -> None:
    log = tmp_path / "server.log"
    with log.open("w") as stream:
        endpoint = LocalEndpoint(make(model_tar, tmp_path / "broken.tar.gz"), free_port(), env=env, log=stream)
        try:
            endpoint.launch()
            with pytest.raises(RuntimeError, match="the model failed to load: /ping answers 500"):
                endpoint.wait_until_ready()
            later = [ping(endpoint.url) or time.sleep(0.5) for _ in range(4)]  # type: ignore[func-returns-value]
        finally:
            endpoint.stop()
    server_log = log.read_text()
    assert re.search(message, server_log), server_log[-3000:]
    assert later == [500] * 4
    assert "Auto recovery failed again" not in server_log  # never retried


@pytest.fixture(scope="module")
def local_wheels() -> list[Path]:
    if wheels.LOCAL.abi != f"cp{sys.version_info.major}{sys.version_info.minor}":
        pytest.skip(f"the locked local wheel set is for {wheels.LOCAL.abi}")
    return locked_set(wheels.LOCAL)


def test_a_wheel_set_that_does_not_install_stops_the_server_and_names_the_package(
    model_dir: Path, local_wheels: list[Path], tmp_path: Path
) -> None:
    """Packaged without one of its wheels, on an image without the packages: pip has nothing to use."""
    incomplete = [wheel for wheel in local_wheels if not wheel.name.startswith("tokenizers-")]
    archive = build_model_archive(model_dir, CODE_DIR, tmp_path / "model.tar.gz", incomplete)
    log = tmp_path / "server.log"
    with log.open("w") as stream, pytest.raises(RuntimeError, match="the server exited with 1"):
        LocalEndpoint(archive, free_port(), log=stream, clean_packages=True).start()
    server_log = log.read_text()
    assert "No matching distribution found for tokenizers==0.23.3" in server_log
    assert "Torchserve version" not in server_log  # TorchServe never started, so nothing answered /ping
