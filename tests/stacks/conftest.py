"""One synthesis per context for the whole session: each takes seconds of jsii start-up."""

from __future__ import annotations

import pytest

from tests.stacks.synthesis import CUSTOM_CONTEXT, EXISTING_MODEL, Synthesized, synthesize


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory)


@pytest.fixture(scope="session")
def custom_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, CUSTOM_CONTEXT)


@pytest.fixture(scope="session")
def existing_model_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, {"modelDataUrl": EXISTING_MODEL})
