"""Two nodes of a training cluster on this machine, each running training/bootstrap.sh, training the tiny model
as one real `torchrun --nnodes 2` job (c10d rendezvous on 127.0.0.1, gloo, one CPU process per node), until
node 1's training dies mid-run: node 0 must fail within a bound, and both must report and power off.

Each node is a sandbox of its own with the stand-ins for aws, curl, nvidia-smi (one GPU) and shutdown; the
container is the e2e docker stand-in (tests/e2e/standins/docker), which runs its command in this venv; the
code assets are zips of this project's training/, inference/ and docker/ folders, as CDK publishes them.
The nodes training to the end, and the one archive, are in the local AWS round trip (tests/e2e).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from inference.serve import free_port
from tests.bootstrap.bootstrap_sandbox import ASSET_BUCKET, ASSETS, REPO, RUN_ID, SCRIPT, STANDINS, Run, Sandbox
from training.tiny_model import build_model, write_dataset

pytestmark = pytest.mark.slow

E2E_DOCKER = REPO / "tests" / "e2e" / "standins" / "docker"
EPOCHS = 3  # node 1 dies after the first; two more leave time to kill it mid-run
FIRST_CHECKPOINT = "checkpoint-6"  # 96 rows, 16 a step
# How long node 0 may take from node 1's death to its own power-off: gloo sees the closed connections at
# once; this bounds torchrun's shutdown, the checkpoint sync, the FAILURE signal and the log shipping.
PEER_LOSS_BOUND_S = 120
RUN_TIMEOUT_S = 300


@dataclass
class Cluster:
    nodes: list[Sandbox]
    runs: list[Run]
    node0_failed_after_s: float


@pytest.fixture(scope="module")
def node1_died(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    root = tmp_path_factory.mktemp("two-nodes")
    data = write_dataset(root / "data", train=96, validation=16)
    inputs = [build_model(root / "tiny-model"), data / "train.csv", data / "validation.csv"]
    port = str(free_port())
    nodes = [_node(root / f"node-{rank}", rank, port, inputs) for rank in range(2)]
    processes = [_start(node) for node in nodes]
    killed_at = _kill_training_after_first_checkpoint(nodes, processes[1])
    processes[0].wait(timeout=RUN_TIMEOUT_S)
    node0_failed_after_s = time.monotonic() - killed_at
    processes[1].wait(timeout=RUN_TIMEOUT_S)
    runs = [_collect(node, process) for node, process in zip(nodes, processes, strict=True)]
    return Cluster(nodes, runs, node0_failed_after_s)


def _node(root: Path, rank: int, port: str, inputs: list[Path]) -> Sandbox:
    sandbox = Sandbox(root).as_cluster_node(rank)
    sandbox.env["NODE0_ADDR"] = "127.0.0.1"
    for name in ASSETS:
        _zip_folder(REPO / name, sandbox.s3(f"{name}.zip", bucket=ASSET_BUCKET))
    staged = sandbox.work_root / "output" / "inputs"
    staged.mkdir(parents=True)
    for path in inputs:
        (shutil.copytree if path.is_dir() else shutil.copyfile)(path, staged / path.name)
    model, train, validation = (f"/workspace/output/inputs/{path.name}" for path in inputs)
    container_docker = root / "container-docker"
    container_docker.mkdir()
    (container_docker / "docker").symlink_to(E2E_DOCKER)
    # After the stand-ins (the venv has a real aws CLI), before the sandbox's python3: the docker stand-in's
    # python must be the venv's own, whose folder the container's PATH starts with (torchrun is there).
    venv_bin = Path(sys.executable).parent
    search_path = sandbox.env["PATH"].replace(f"{STANDINS}:", f"{container_docker}:{STANDINS}:{venv_bin}:", 1)
    sandbox.env.update(
        PATH=search_path,
        RENDEZVOUS_PORT=port,
        STANDIN_GPUS="1",
        TRAIN_ARGS=f"--model-name {model} --train-file {train} --validation-file {validation} --epochs {EPOCHS} "
        "--global-batch-size 16 --learning-rate 2e-3 --no-compile --no-bf16",
    )
    # Tests may run as root: a real `shutdown` found first would power the machine off.
    for tool in ("shutdown", "aws", "curl"):
        assert shutil.which(tool, path=sandbox.env["PATH"]) == str(STANDINS / tool), tool
    return sandbox


def _zip_folder(folder: Path, archive: Path) -> None:
    """What a CDK zip asset of the folder holds: its files, no top folder, no bytecode."""
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(folder))


def _start(node: Sandbox) -> subprocess.Popen[str]:
    with (node.root / "out").open("w") as out, (node.root / "err").open("w") as err:
        return subprocess.Popen(["bash", str(SCRIPT)], env=node.env, stdout=out, stderr=err, text=True)


def _collect(node: Sandbox, process: subprocess.Popen[str]) -> Run:
    return node.collect(process.returncode, (node.root / "out").read_text(), (node.root / "err").read_text())


def _kill_training_after_first_checkpoint(nodes: list[Sandbox], node1: subprocess.Popen[str]) -> float:
    """Once the first checkpoint is whole (rank 0's state, node 1's RNG state), node 1's torchrun and its
    worker are killed, as a crash or an out-of-memory kill would end them."""
    checkpoints = [node.work_root / "output" / "checkpoints" / FIRST_CHECKPOINT for node in nodes]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (
        list(checkpoints[1].glob("rng_state_*.pth")) and any((c / "trainer_state.json").is_file() for c in checkpoints)
    ):
        assert node1.poll() is None, (nodes[1].root / "out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    descendants = psutil.Process(node1.pid).children(recursive=True)
    torchrun = [process for process in descendants if "torchrun" in {Path(word).name for word in process.cmdline()[:2]}]
    assert torchrun, [process.cmdline() for process in descendants]
    for process in torchrun:
        for doomed in [process, *process.children(recursive=True)]:
            doomed.send_signal(signal.SIGKILL)
    return time.monotonic()


def test_node_0_fails_within_a_bound_when_node_1_dies_mid_run(node1_died: Cluster) -> None:
    print(f"node 0 powered off {node1_died.node0_failed_after_s:.1f} s after node 1's training was killed")
    assert node1_died.node0_failed_after_s < PEER_LOSS_BOUND_S
    node0 = node1_died.runs[0]
    assert "training: resuming" not in node0.stdout  # it started from scratch and was cut off mid-run
    assert "saved model to" not in node0.stdout


@pytest.mark.parametrize("rank", [0, 1])
def test_each_node_signals_failure_with_its_rank_step_and_log_tail_and_powers_off(
    node1_died: Cluster, rank: int
) -> None:
    run = node1_died.runs[rank]
    (failure,) = run.signals
    assert failure["Status"] == "FAILURE", run.stdout[-3000:]
    assert failure["UniqueId"] == f"{RUN_ID}-node-{rank}"
    failed = re.match(rf"node {rank} of 2: step train failed \(exit (\d+)\)", failure["Reason"])
    assert failed, failure["Reason"]
    assert failure["Reason"].endswith(f"bootstrap: step train: failed with exit code {failed.group(1)}")
    assert run.powered_off


def test_each_node_synced_its_share_of_the_first_checkpoint_before_it_stopped(node1_died: Cluster) -> None:
    """Rank 0's state and each rank's RNG state, from whichever node wrote them: together, the whole checkpoint."""
    synced = [
        {path.name for path in node.s3(f"runs/{RUN_ID}/checkpoints/{FIRST_CHECKPOINT}").glob("*")}
        for node in node1_died.nodes
    ]
    assert all(synced)
    assert {"trainer_state.json", "model.safetensors", "rng_state_0.pth", "rng_state_1.pth"} <= synced[0] | synced[1]
