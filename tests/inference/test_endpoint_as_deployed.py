"""The deployable archive, started as the endpoint starts it: no network, an image without its packages,
the Model's environment from the stack, and the DLC entrypoint variant that overwrites the worker count.

One start serves every test here (`python -m inference.cold_start`, a subprocess that cuts the network
with `unshare --net` where it can). The archive carries the locked wheels for this machine's platform;
the endpoint's own are the same lock for aarch64 (tests/training/test_wheels.py checks those).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.inference_stack import THREADS_PER_WORKER, graviton_environment, vcpus
from tests.wheel_sets import locked_set
from training import wheels
from training.package import build_model_archive

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
INSTANCE_TYPE = "ml.c7g.4xlarge"
# Probed here, not through inference.cold_start, so a cold start that skips the namespace fails.
UNSHARE = ["unshare", "--net", "--map-root-user", "true"]
NAMESPACES = bool(shutil.which("unshare")) and subprocess.run(UNSHARE, check=False, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def deployed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The report on stdout and the server log on stderr of one cold start."""
    if wheels.LOCAL.abi != f"cp{sys.version_info.major}{sys.version_info.minor}":
        pytest.skip(f"the locked local wheel set is for {wheels.LOCAL.abi}")
    archive = build_model_archive(
        model_dir, REPO / "inference", tmp_path_factory.mktemp("deployable") / "model.tar.gz", locked_set(wheels.LOCAL)
    )
    model_env = [f"--env={name}={value}" for name, value in graviton_environment(INSTANCE_TYPE).items()]
    command = [
        *(sys.executable, "-m", "inference.cold_start", "--model", str(archive)),
        *("--no-network", "--clean-packages", "--overwrite-workers", *model_env),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def test_it_serves_with_the_network_cut(deployed: tuple[dict[str, Any], str]) -> None:
    report, _ = deployed
    assert report["status"] == 200
    assert report["reply"]["sentiment"] in {"negative", "neutral", "positive"}
    if NAMESPACES:
        assert report["network"].startswith("network namespace")
        assert report["internet_reachable"] is False
    else:
        assert report["network"].startswith("pip index on a closed loopback port")


def test_it_installs_every_locked_package_from_the_archives_wheels(deployed: tuple[dict[str, Any], str]) -> None:
    _, server_log = deployed
    (line,) = [line for line in server_log.splitlines() if line.startswith("Successfully installed ")]
    installed = {tuple(item.rsplit("-", 1)) for item in line.split()[2:]}
    assert {(wheels.canonical(name), version) for name, version in installed} == {
        (pin.key, pin.version) for pin in wheels.read_lock()
    }
    assert "Looking in links: " in server_log and "/ml/model/code/wheels" in server_log


def test_the_worker_plan_survives_the_entrypoint_overwrite(deployed: tuple[dict[str, Any], str]) -> None:
    """The entrypoint set SAGEMAKER_MODEL_SERVER_WORKERS to this machine's CPU count; TorchServe still
    runs the stack's plan for ml.c7g.4xlarge, and every worker runs its share of threads."""
    report, server_log = deployed
    workers = vcpus(INSTANCE_TYPE) // THREADS_PER_WORKER
    assert (workers, THREADS_PER_WORKER) == (4, 4)
    assert f"Default workers per model: {os.cpu_count()}" in server_log  # the overwrite happened
    assert report["workers"] == workers
    loaded = [line for line in server_log.splitlines() if "MODEL_LOG - loaded " in line]
    assert len(loaded) == workers
    assert all(f"threads={THREADS_PER_WORKER} " in line for line in loaded)
