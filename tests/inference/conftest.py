"""Shared fixtures: one tiny model, its deployable model.tar.gz, and the handler's loaded Classifier."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from inference import inference as handler
from tests.wheel_sets import locked_set
from training import wheels
from training.onnx_export import INT8_FILE, export_int8
from training.package import build_model_archive
from training.tiny_model import build_model

CODE_DIR = Path(handler.__file__).parent


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as an archive unpacks: with the int8 ONNX graph that training.package adds."""
    directory = build_model(tmp_path_factory.mktemp("tiny-model"))
    export_int8(directory, directory / INT8_FILE)
    return directory


@pytest.fixture(scope="session")
def model_tar(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive the endpoint gets: model at the root, this handler and the endpoint's aarch64 wheels
    under code/. Served here, pip finds the pins already installed and leaves the wheels unused."""
    output = tmp_path_factory.mktemp("archive") / "model.tar.gz"
    return build_model_archive(model_dir, CODE_DIR, output, locked_set(wheels.ENDPOINT))


@contextlib.contextmanager
def restored_threads() -> Iterator[None]:
    """model_fn sets torch's process-wide thread count; tests put it back afterwards."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def classifier(model_dir: Path) -> handler.Classifier:
    with restored_threads():
        return handler.model_fn(str(model_dir))


@pytest.fixture
def keep_threads() -> Iterator[None]:
    with restored_threads():
        yield
