"""One synthesis per context for the whole session: each takes seconds of jsii start-up."""

from __future__ import annotations

import pytest

from tests.stacks.synthesis import (
    CLUSTER_CONTEXT,
    CUSTOM_CONTEXT,
    EXISTING_MODEL,
    P5_CLUSTER_CONTEXT,
    Synthesized,
    synthesize,
)


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory)


@pytest.fixture(scope="session")
def custom_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, CUSTOM_CONTEXT)


@pytest.fixture(scope="session")
def existing_model_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, {"modelDataUrl": EXISTING_MODEL})


@pytest.fixture(scope="session")
def cluster_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, CLUSTER_CONTEXT)


@pytest.fixture(scope="session")
def p5_cluster_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, P5_CLUSTER_CONTEXT)
