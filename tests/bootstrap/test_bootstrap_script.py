"""The real training/bootstrap.sh, run by bash against stand-ins: order, signals, shutdown, resume."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.bootstrap.bootstrap_sandbox import (
    CHECKPOINT_PREFIX,
    IMAGE_URI,
    METRICS_KEY,
    MODEL_KEY,
    REGISTRY,
    RUN_ID,
    SCRIPT,
    TIMEOUT_S,
    Run,
    Sandbox,
)

TRAINING_STEPS = [
    "check-config",
    "schedule-watchdog",
    "install-per-boot",
    "fetch-assets",
    "ecr-login",
    "pull-image",
    "build-image",
    "restore-checkpoints",
    "train",
    "sync-checkpoints",
    "package",
    "upload",
    "signal-success",
]
METRICS = {"eval_recall": 0.73, "eval_accuracy": 0.71}


def only_signal(run: Run) -> dict[str, str]:
    assert len(run.signals) == 1, run.stdout
    return run.signals[0]


def docker_run(run: Run, module: str) -> list[str]:
    """The one `docker run` whose command runs `module`."""
    (call,) = [call for call in run.calls_to("docker", "run") if module in call[-1]]
    return call


def torchrun_argv(run: Run) -> list[str]:
    """What reached torchrun in the container, after the DLC entrypoint's `eval`."""
    (argv,) = run.calls_to("torchrun")
    return argv


def test_success_runs_every_step_in_order(succeeded: tuple[Sandbox, Run]) -> None:
    _, run = succeeded

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.steps == TRAINING_STEPS


def test_success_uploads_to_the_exact_keys_signals_the_metrics_and_powers_off(
    succeeded: tuple[Sandbox, Run],
) -> None:
    sandbox, run = succeeded

    with tarfile.open(sandbox.s3(MODEL_KEY)) as archive:
        assert "./config.json" in archive.getnames()
    assert json.loads(sandbox.s3(METRICS_KEY).read_text()) == METRICS
    assert only_signal(run) == {
        "Status": "SUCCESS",
        "UniqueId": RUN_ID,
        "Data": json.dumps(METRICS, separators=(",", ":")),
        "Reason": f"run {RUN_ID}: model uploaded to s3://artifacts-bucket/{MODEL_KEY}",
    }
    assert run.calls[0] == ["shutdown", "-h", "+720", f"pt2 bootstrap watchdog: run {RUN_ID} overran"]
    assert run.powered_off


def test_signal_is_a_put_with_an_empty_content_type(succeeded: tuple[Sandbox, Run]) -> None:
    """The presigned URL's signature covers an empty Content-Type; curl would otherwise add one."""
    sandbox, run = succeeded
    (curl,) = run.calls_to("curl")

    assert curl[curl.index("-X") + 1] == "PUT"
    assert curl[curl.index("-H") + 1] == "Content-Type:"
    assert curl[-1] == sandbox.env["WAIT_HANDLE_URL"]


def test_image_is_pulled_from_the_region_registry_and_built_from_the_project(
    succeeded: tuple[Sandbox, Run],
) -> None:
    sandbox, run = succeeded
    project = sandbox.work_root / "project"

    assert [call[0] for call in run.calls_to("docker")] == ["login", "pull", "build", "run", "run"]
    assert run.calls_to("aws", "ecr") == [["ecr", "get-login-password", "--region", "us-west-2"]]
    assert run.calls_to("docker", "login") == [["login", "--username", "AWS", "--password-stdin", REGISTRY]]
    assert run.calls_to("docker", "pull") == [["pull", IMAGE_URI]]
    (build,) = run.calls_to("docker", "build")
    assert f"BASE_IMAGE={IMAGE_URI}" in build
    assert build[build.index("-f") + 1] == str(project / "docker" / "Dockerfile")
    assert build[-1] == str(project)


def test_training_uses_every_gpu_and_the_recipe_container_settings(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_GPUS"] = "4"
    run = sandbox.run()
    call = " ".join(docker_run(run, "training.train"))

    for setting in ("--init", "--gpus all", "--shm-size=1g", "--ulimit memlock=-1", "--ulimit stack=67108864"):
        assert setting in call
    for option in ("awslogs-group=/pt2/training", f"awslogs-stream={RUN_ID}/training", "awslogs-region=us-west-2"):
        assert f"--log-opt {option}" in call
    assert torchrun_argv(run) == shlex.split(
        "--standalone --nproc_per_node=4 -m training.train --output-dir /workspace/output"
        " --epochs 10 --per-device-batch-size 16"
    )


def test_train_args_reach_torchrun_word_for_word_through_the_entrypoints_eval(sandbox: Sandbox) -> None:
    """The DLC entrypoint evaluates the command; what settings.py's trainArgs pattern refuses must still
    reach torchrun as written, with nothing expanded, globbed or run."""
    pwned = sandbox.root / "pwned"
    words = ["--note", f"$(touch${{IFS}}{pwned})", "`id`", "$HOME", "*", "'a'", '"b"', "c\\d", "e;f", "g&&h", "$'x'"]
    sandbox.env["TRAIN_ARGS"] = " ".join(words)
    run = sandbox.run()

    assert run.returncode == 0, run.stdout + run.stderr
    assert torchrun_argv(run)[-len(words) :] == words
    assert not pwned.exists()


def test_a_stop_reaches_torchrun_through_docker_init_and_the_dlc_entrypoint(sandbox: Sandbox) -> None:
    """A reboot or `docker stop` sends SIGTERM to the container's PID 1 (the CLI proxies what it gets).

    docker-init forwards it to its child only; with `exec`, that child is torchrun, not the
    entrypoint's bash, which would die of it while torchrun is killed without a word. The container
    gets a PID namespace of its own here, so PID 1 and its end behave as in a real one.
    """
    sandbox.env["STANDIN_PID_NAMESPACE"] = "1"
    run = stopped_while_training(sandbox)

    assert ["torchrun-stopped", "TERM"] in run.calls, run.stdout + run.stderr
    assert not (sandbox.work_root / "output" / "model").exists()  # stopped, not finished


def test_caches_live_on_the_host_so_a_restart_finds_what_the_first_start_left(sandbox: Sandbox) -> None:
    """HF_HOME, TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR point into one mount of a host folder."""
    sandbox.env["STANDIN_FAIL"] = "docker:run *training.package*"  # trained, then the run broke off
    first, second = sandbox.run(), sandbox.run()
    cached = {"hf-entry", "inductor-entry", "triton-entry"}

    assert (found_cached(first), found_cached(second)) == (set(), cached)
    assert {path.name for path in (sandbox.work_root / "cache").rglob("*") if path.is_file()} == cached


def found_cached(run: Run) -> set[str]:
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("found cached:")]
    return set(line.split()[2:])


def test_packaging_runs_training_package_from_the_project_dir(succeeded: tuple[Sandbox, Run]) -> None:
    _, run = succeeded
    call = docker_run(run, "training.package")

    assert call[call.index("-w") + 1] == "/workspace/project"
    assert "--init" in call
    assert run.calls_to("python") == [
        shlex.split(
            "-m training.package --model-dir /workspace/output/model --code-dir inference --no-handler"
            " --output /workspace/output/model.tar.gz --wheels /workspace/output/wheels --download"
        )
    ]


def test_empty_train_args_add_nothing(sandbox: Sandbox) -> None:
    sandbox.env["TRAIN_ARGS"] = ""

    assert torchrun_argv(sandbox.run())[-2:] == ["--output-dir", "/workspace/output"]


@pytest.mark.parametrize(
    ("failing_call", "step"),
    [
        ("aws:s3 cp * s3://*/inference.zip *", "fetch-assets"),
        ("aws:ecr get-login-password *", "ecr-login"),
        ("docker:pull *", "pull-image"),
        ("docker:build *", "build-image"),
        ("docker:run *training.train*", "train"),
        ("docker:run *training.package*", "package"),
        ("aws:s3 cp */model.tar.gz s3://*", "upload"),
    ],
)
def test_a_failing_step_signals_failure_with_its_name_and_last_lines_then_powers_off(
    sandbox: Sandbox, failing_call: str, step: str
) -> None:
    sandbox.env["STANDIN_FAIL"] = failing_call
    run = sandbox.run()

    assert run.returncode != 0
    assert run.steps[-1] == step
    failure = only_signal(run)
    assert failure["Status"] == "FAILURE"
    assert failure["UniqueId"] == RUN_ID
    assert failure["Reason"].startswith(f"step {step} failed (exit 1); last log lines:\n")
    assert "simulated failure of" in failure["Reason"]
    assert failure["Reason"].endswith(f"bootstrap: step {step}: failed with exit code 1")
    assert len(failure["Reason"]) <= 1000
    assert not sandbox.s3(MODEL_KEY).exists()
    assert run.powered_off


def test_failure_reason_is_bounded_and_keeps_the_newest_lines(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_FAIL"] = "docker:run *training.train*"
    sandbox.env["TRAIN_ARGS"] = "--note " + "x" * 3000  # echoed back in the failure line
    reason = only_signal(sandbox.run())["Reason"]

    assert len(reason) == 1000
    assert reason.startswith("step train failed (exit 1); last log lines:\nxxx")
    assert reason.endswith("step train: failed with exit code 1")


def test_failure_reason_names_the_tools_own_error_line_even_when_it_left_the_tail(sandbox: Sandbox) -> None:
    """torchrun prints a long summary after a rank's `error:` line; the reason still leads with it."""
    sandbox.env["STANDIN_FAIL"] = "docker:run *training.train*"
    sandbox.env["STANDIN_OUTPUT"] = "error: train split: no rows\n" + "torchrun summary line\n" * 40
    reason = only_signal(sandbox.run())["Reason"]

    assert reason.startswith("step train failed (exit 1): error: train split: no rows; last log lines:\n")
    assert reason.endswith("step train: failed with exit code 1")


def test_keep_instance_on_failure_leaves_it_up_but_keeps_the_watchdog(sandbox: Sandbox) -> None:
    sandbox.env["KEEP_INSTANCE_ON_FAILURE"] = "true"
    sandbox.env["STANDIN_FAIL"] = "docker:build *"
    run = sandbox.run()

    assert only_signal(run)["Status"] == "FAILURE"
    assert run.calls_to("shutdown") == [["-h", "+720", f"pt2 bootstrap watchdog: run {RUN_ID} overran"]]
    assert "aws ssm start-session --target" in run.stdout


def test_keep_instance_on_failure_still_powers_off_after_success(sandbox: Sandbox) -> None:
    sandbox.env["KEEP_INSTANCE_ON_FAILURE"] = "true"

    assert sandbox.run().powered_off


def test_a_later_boot_after_success_retrains_nothing_but_signals_and_powers_off(sandbox: Sandbox) -> None:
    sandbox.run()
    wrapper = sandbox.per_boot_dir / "pt2-bootstrap.sh"
    # What cloud-init gives a per-boot script: none of the run's variables; the wrapper has them.
    bare_env = {key: sandbox.env[key] for key in ("PATH", "HOME", "LANG", "STANDIN_DIR")}
    second = sandbox.run(["bash", str(wrapper)], env=bare_env)

    assert second.returncode == 0, second.stdout + second.stderr
    assert second.steps == ["check-config", "schedule-watchdog", "install-per-boot", "fetch-metrics", "signal-success"]
    assert second.calls_to("docker") == []
    signal_sent = only_signal(second)
    assert signal_sent["Status"] == "SUCCESS"
    assert json.loads(signal_sent["Data"]) == METRICS
    assert second.powered_off


def test_a_later_boot_without_metrics_still_signals_success(sandbox: Sandbox) -> None:
    sandbox.s3(MODEL_KEY).parent.mkdir(parents=True)
    sandbox.s3(MODEL_KEY).write_bytes(b"model")
    run = sandbox.run()

    assert only_signal(run)["Data"] == "{}"
    assert run.powered_off


def test_per_boot_wrapper_is_private_and_reruns_this_script(succeeded: tuple[Sandbox, Run]) -> None:
    sandbox, _ = succeeded
    wrapper = sandbox.per_boot_dir / "pt2-bootstrap.sh"

    copy = sandbox.work_root / "bootstrap.sh"
    assert wrapper.stat().st_mode & 0o777 == copy.stat().st_mode & 0o777 == 0o700
    assert copy.read_text() == SCRIPT.read_text()
    assert wrapper.read_text().splitlines()[-1] == f"exec bash {sandbox.work_root}/bootstrap.sh"


def test_training_resumes_from_the_checkpoints_in_s3(sandbox: Sandbox) -> None:
    saved = sandbox.s3(f"{CHECKPOINT_PREFIX}/checkpoint-3/trainer_state.json")
    saved.parent.mkdir(parents=True)
    saved.write_text("{}")
    run = sandbox.run()

    assert "found checkpoints: checkpoint-3" in run.stdout
    assert sandbox.s3(f"{CHECKPOINT_PREFIX}/checkpoint-9/trainer_state.json").exists()


def test_a_failed_training_still_uploads_the_checkpoints_it_wrote(sandbox: Sandbox) -> None:
    written = sandbox.work_root / "output" / "checkpoints" / "checkpoint-5"
    written.mkdir(parents=True)
    sandbox.env["STANDIN_FAIL"] = "docker:run *training.train*"
    sandbox.run()

    assert sandbox.s3(f"{CHECKPOINT_PREFIX}/checkpoint-5").is_dir()


def test_checkpoints_are_synced_while_training_runs(sandbox: Sandbox) -> None:
    sandbox.env["CHECKPOINT_SYNC_SECONDS"] = "1"
    sandbox.env["STANDIN_TRAIN_SECONDS"] = "2"
    run = sandbox.run()

    uploads = [call for call in run.calls_to("aws", "s3", "sync") if call[-1].startswith("s3://")]
    assert len(uploads) >= 2  # at least one during training, one at the end
    assert run.returncode == 0


def test_stopped_by_a_signal_it_neither_reports_failure_nor_forces_a_power_off(sandbox: Sandbox) -> None:
    """A reboot (or the watchdog) stops cloud-init with SIGTERM: a reboot resumes through per-boot."""
    run = stopped_while_training(sandbox)

    assert run.returncode == 143
    assert "step train: stopped by a signal" in run.stdout
    assert run.signals == []
    assert ["-h", "now"] not in run.calls_to("shutdown")


def stopped_while_training(sandbox: Sandbox) -> Run:
    """Runs the script in a session of its own and sends SIGTERM to all of it while training runs."""
    sandbox.env["STANDIN_TRAIN_SECONDS"] = "20"
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env=sandbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_training(sandbox)
    os.killpg(process.pid, signal.SIGTERM)  # systemd signals the whole unit, docker client included
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    return sandbox.collect(process.returncode, stdout, stderr)


def wait_for_training(sandbox: Sandbox) -> None:
    calls_log = sandbox.standin_dir / "calls.log"
    deadline = time.monotonic() + TIMEOUT_S
    while not (calls_log.exists() and "\ntorchrun\t" in calls_log.read_text()):
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    time.sleep(0.2)  # let the stand-in reach its sleep


def test_the_log_is_shipped_to_cloudwatch(succeeded: tuple[Sandbox, Run]) -> None:
    sandbox, run = succeeded

    assert run.calls_to("aws", "logs", "create-log-stream") == [
        ["logs", "create-log-stream", "--log-group-name", "/pt2/training", "--log-stream-name", f"{RUN_ID}/bootstrap"]
    ]
    messages = [event["message"] for event in sandbox.log_events()]
    assert any(message.endswith("step signal-success: done") for message in messages)
    assert messages[-1].endswith("bootstrap: shutting down")


def test_failure_logs_are_shipped_too(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_FAIL"] = "docker:pull *"
    sandbox.run()

    messages = [event["message"] for event in sandbox.log_events()]
    assert any("simulated failure of 'docker pull" in message for message in messages)


@pytest.mark.parametrize("failing_call", ["", "docker:run *training.train*"], ids=["success", "failure"])
def test_the_log_ships_before_the_signal_and_each_line_once(sandbox: Sandbox, failing_call: str) -> None:
    """A FAILURE signal starts the rollback, which may end the instance: what it logged must be out by then."""
    sandbox.env["STANDIN_FAIL"] = failing_call
    run = sandbox.run()

    tools = [call[0] if call[0] != "aws" else " ".join(call[:3]) for call in run.calls]
    signal = tools.index("curl")
    assert "aws logs put-log-events" in tools[:signal]
    assert "aws logs put-log-events" in tools[signal:]  # and the lines written since
    messages = [event["message"] for event in sandbox.log_events()]
    log_file = Path(sandbox.env["WORK_ROOT"]) / "logs" / "bootstrap.log"
    assert messages == [line for line in log_file.read_text().splitlines() if line]
    status = only_signal(run)["Status"]
    assert any(message.endswith(f"sent {status} signal") for message in messages)
    if failing_call:
        assert any("simulated failure of 'docker run" in message for message in messages)


def test_unreachable_cloudwatch_changes_nothing_else(sandbox: Sandbox) -> None:
    sandbox.env["STANDIN_FAIL"] = "aws:logs put-log-events *"
    run = sandbox.run()

    assert only_signal(run)["Status"] == "SUCCESS"
    assert run.powered_off


def test_works_as_user_data_with_the_exports_in_front(sandbox: Sandbox) -> None:
    """As stacks/user_data.py renders it: `#!/bin/bash`, the exports, then the body without its shebang."""
    exports = "".join(
        f"export {name}={shlex.quote(value)}\n"
        for name, value in sandbox.env.items()
        if name not in ("PATH", "HOME", "LANG", "STANDIN_DIR")
    )
    body = SCRIPT.read_text().split("\n", 1)[1]
    user_data = sandbox.root / "part-001"
    user_data.write_text(f"#!/bin/bash\n{exports}{body}")
    bare_env = {key: sandbox.env[key] for key in ("PATH", "HOME", "LANG", "STANDIN_DIR")}
    run = sandbox.run(["bash", str(user_data)], env=bare_env)

    assert run.steps == TRAINING_STEPS
    assert only_signal(run)["Status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"MODEL_S3_URI": None}, "missing required variable MODEL_S3_URI"),
        ({"TRAINING_IMAGE_URI": ""}, "missing required variable TRAINING_IMAGE_URI"),
        ({"MAX_RUNTIME_MINUTES": "12h"}, "MAX_RUNTIME_MINUTES: not a positive integer"),
        ({"KEEP_INSTANCE_ON_FAILURE": "yes"}, "KEEP_INSTANCE_ON_FAILURE: not true/false"),
        ({"CHECKPOINT_S3_URI": "s3://elsewhere/checkpoints"}, "CHECKPOINT_S3_URI: not in the artifact bucket"),
    ],
)
def test_bad_config_fails_clearly_before_touching_anything(
    sandbox: Sandbox, changes: dict[str, str | None], message: str
) -> None:
    for name, value in changes.items():
        if value is None:
            del sandbox.env[name]
        else:
            sandbox.env[name] = value
    run = sandbox.run()

    assert run.returncode != 0
    assert f"config: {message}" in run.stdout
    assert message in only_signal(run)["Reason"]
    # the log (stream, events), the signal, the lines since (events), power off
    assert [call[0] for call in run.calls] == ["aws", "aws", "curl", "aws", "shutdown"]
    assert run.powered_off


def test_without_a_wait_handle_it_still_reports_and_powers_off(sandbox: Sandbox) -> None:
    del sandbox.env["WAIT_HANDLE_URL"]
    run = sandbox.run()

    assert "config: missing required variable WAIT_HANDLE_URL" in run.stdout
    assert run.signals == []
    assert run.powered_off
