from pathlib import Path

import pytest

from tests.bootstrap.bootstrap_sandbox import Run, Sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture(scope="module")
def succeeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sandbox, Run]:
    """One successful run, shared by the tests that only look at it (each run costs ~0.5 s)."""
    sandbox = Sandbox(tmp_path_factory.mktemp("succeeded"))
    return sandbox, sandbox.run()
