"""training/bootstrap.sh on one node of a training cluster, against the stand-ins: the torchrun job it joins,
the container's network and EFA devices, who uploads and signals, and what a failure reports.

Real torchrun across two nodes runs in the local AWS round trip (tests/e2e/test_round_trip.py).
"""

from __future__ import annotations

import json
import shlex

import pytest

from tests.bootstrap.bootstrap_sandbox import EFA_DEVICES, MODEL_KEY, NODE0_ADDR, RUN_ID, Run, Sandbox

SINGLE_INSTANCE_STEPS_BEFORE_TRAINING = ["check-config", "schedule-watchdog", "install-per-boot"]


def training_call(run: Run) -> list[str]:
    (call,) = [call for call in run.calls_to("docker", "run") if "training.train" in call[-1]]
    return call


def option_values(call: list[str], option: str) -> list[str]:
    return [call[index + 1] for index, word in enumerate(call) if word == option]


@pytest.mark.parametrize("rank", [0, 1])
def test_each_node_joins_one_torchrun_job_at_node0s_rendezvous(sandbox: Sandbox, rank: int) -> None:
    run = sandbox.as_cluster_node(rank).run()

    assert run.returncode == 0, run.stdout + run.stderr
    (torchrun,) = run.calls_to("torchrun")
    assert torchrun == shlex.split(
        f"--nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint {NODE0_ADDR}:29400 --rdzv-id {RUN_ID} "
        f"--rdzv-conf is_host={int(rank == 0)},join_timeout=600,read_timeout=600 "
        "-m training.train --output-dir /workspace/output --epochs 10 --per-device-batch-size 16"
    )
    assert f"node {rank} of 2: training on 8 GPU(s)" in run.stdout


def test_the_container_gets_the_host_network_every_efa_device_and_the_efa_settings(sandbox: Sandbox) -> None:
    call = training_call(sandbox.as_cluster_node(1).run())
    devices = sandbox.root / "infiniband"

    assert option_values(call, "--network") == ["host"]
    assert option_values(call, "--device") == [str(devices / f"uverbs{index}") for index in range(EFA_DEVICES)]
    assert {"FI_PROVIDER=efa", "RDMAV_FORK_SAFE=1"} <= set(option_values(call, "-e"))
    assert "--ulimit memlock=-1" in " ".join(call)  # EFA registers memory; the single instance has it too


def test_missing_efa_devices_fail_the_node_before_it_pulls_the_image(sandbox: Sandbox) -> None:
    run = sandbox.as_cluster_node(1, efa_devices=2).run()

    assert run.steps == [*SINGLE_INSTANCE_STEPS_BEFORE_TRAINING, "check-efa"]
    (signal,) = run.signals
    assert signal["Reason"].startswith(
        "node 1 of 2: step check-efa failed (exit 1): error: expected 4 EFA devices under "
        f"{sandbox.root / 'infiniband'}, found 2; last log lines:\n"
    )
    assert run.calls_to("docker") == []
    assert run.powered_off


def test_a_failing_node_signals_failure_under_its_own_id_with_its_rank_step_and_log_tail(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_FAIL"] = "docker:run *training.train*"
    run = sandbox.as_cluster_node(1).run()

    (signal,) = run.signals
    assert (signal["Status"], signal["UniqueId"]) == ("FAILURE", f"{RUN_ID}-node-1")
    assert signal["Reason"].startswith("node 1 of 2: step train failed (exit 1); last log lines:\n")
    assert len(signal["Reason"]) <= 1000
    assert signal["Reason"].endswith("bootstrap: step train: failed with exit code 1")
    assert run.powered_off


def test_the_node_that_holds_rank_0s_model_uploads_it_and_signals_success(sandbox: Sandbox) -> None:
    run = sandbox.as_cluster_node(1).run()  # c10d may give global rank 0 to any node

    assert run.steps[-3:] == ["package", "upload", "signal-success"]
    (signal,) = run.signals
    assert (signal["Status"], signal["UniqueId"]) == ("SUCCESS", f"{RUN_ID}-node-1")
    assert sandbox.s3(MODEL_KEY).exists()


def test_a_node_without_rank_0_uploads_nothing_and_sends_no_signal(sandbox: Sandbox) -> None:
    """Not even a model that an earlier boot of this node left behind."""
    output = sandbox.work_root / "output"
    (output / "model").mkdir(parents=True)
    (output / "metrics.json").write_text(json.dumps({"eval_recall": 0.1}))
    sandbox.env["STANDIN_RANK0_ELSEWHERE"] = "1"
    run = sandbox.as_cluster_node(0).run()

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.steps[-2:] == ["train", "sync-checkpoints"]
    assert "global rank 0 ran on another node: that node uploads the model" in run.stdout
    assert run.signals == []
    assert not sandbox.s3(MODEL_KEY).exists()
    assert sandbox.s3(f"runs/{RUN_ID}/checkpoints/checkpoint-9/rng_state_1.pth").exists()  # its share of the state
    assert run.powered_off


@pytest.mark.parametrize(("rank", "signals"), [(0, ["SUCCESS"]), (1, [])])
def test_only_node_0_reports_a_model_that_is_already_uploaded(sandbox: Sandbox, rank: int, signals: list[str]) -> None:
    sandbox.s3(MODEL_KEY).parent.mkdir(parents=True)
    sandbox.s3(MODEL_KEY).write_bytes(b"model")
    run = sandbox.as_cluster_node(rank).run()

    assert [signal["Status"] for signal in run.signals] == signals
    assert run.calls_to("docker") == []
    assert run.powered_off


def test_each_node_logs_to_streams_of_its_own(sandbox: Sandbox) -> None:
    run = sandbox.as_cluster_node(1).run()

    assert option_values(training_call(run), "--log-opt")[-1] == f"awslogs-stream={RUN_ID}/node-1/training"
    (create,) = run.calls_to("aws", "logs", "create-log-stream")
    assert create[-1] == f"{RUN_ID}/node-1/bootstrap"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"NODE_RANK": "2"}, "NODE_RANK: not from 0 to 1"),
        ({"NODE0_ADDR": ""}, "NODE0_ADDR: a cluster needs node 0's address"),
        ({"EFA_INTERFACES": "four"}, "EFA_INTERFACES: not a positive integer"),
    ],
)
def test_a_bad_cluster_setting_fails_clearly_before_touching_anything(
    sandbox: Sandbox, changes: dict[str, str], message: str
) -> None:
    sandbox.as_cluster_node(1).env.update(changes)
    run = sandbox.run()

    assert run.steps == ["check-config"]
    assert f"config: {message}" in run.stdout
    (signal,) = run.signals
    assert message in signal["Reason"]
    assert run.powered_off
