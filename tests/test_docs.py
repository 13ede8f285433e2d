"""The README and the pins stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.config_table import config_table
from stacks.images import IMAGE_PAIRS, image_tag, inference_image, training_image

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_configuration_table_is_generated_from_the_settings() -> None:
    assert config_table() in README


def test_readme_names_every_pinned_image_tag() -> None:
    for pair in IMAGE_PAIRS:
        assert f"`{image_tag(training_image(pair, 'us-west-2'))}`" in README
        assert f"`{image_tag(inference_image(pair, 'us-west-2'))}`" in README


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README
    assert "make test" in README


def pin(path: str, package: str) -> str:
    match = re.search(rf"^{package}==(\S+)$", (ROOT / path).read_text(), re.MULTILINE)
    assert match, f"{path} does not pin {package}"
    return match.group(1)


def test_transformers_is_pinned_once_for_training_and_the_endpoint() -> None:
    assert pin("docker/requirements.txt", "transformers") == pin("inference/requirements.txt", "transformers")
    assert "-r docker/requirements.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_onnx_runtime_is_one_version_for_packaging_and_the_endpoint() -> None:
    """The training image quantizes the int8 graph with the ONNX Runtime that serves it."""
    assert pin("docker/requirements.txt", "onnxruntime") == pin("inference/requirements.txt", "onnxruntime")
