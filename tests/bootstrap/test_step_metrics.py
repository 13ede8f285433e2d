"""The bootstrap's step timings: one valid EMF line per step in the shipped log, with the run id; the training
container gets what its metrics callback needs."""

from __future__ import annotations

import re
from typing import Any

from tests.bootstrap.bootstrap_sandbox import RUN_ID, SCRIPT, Sandbox
from tests.emf_spec import parse_emf
from training import emf

NAMESPACE = "pt2/training"


def step_documents(sandbox: Sandbox) -> list[dict[str, Any]]:
    messages = [event["message"] for event in sandbox.log_events()]
    return [parse_emf(message) for message in messages if message.startswith('{"_aws"')]


def test_every_step_writes_its_seconds_as_emf_with_the_run_id(sandbox: Sandbox) -> None:
    sandbox.env["METRICS_NAMESPACE"] = NAMESPACE
    run = sandbox.run()

    documents = step_documents(sandbox)
    assert [document[emf.STEP_DIMENSION] for document in documents] == ["check-config", "boot", *run.steps[1:]]
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [[emf.RUN_DIMENSION, emf.STEP_DIMENSION]]
        assert directive["Metrics"] == [{"Name": emf.STEP_SECONDS, "Unit": "Seconds"}]
        assert document[emf.RUN_DIMENSION] == RUN_ID
        assert document[emf.STEP_SECONDS] >= 0
    (training,) = [call for call in run.calls_to("docker", "run") if "training.train" in call[-1]]
    assert " -e RUN_ID -e METRICS_NAMESPACE " in " ".join(training)


def test_the_dashboards_steps_are_the_bootstraps() -> None:
    steps = set(re.findall(r"^\s+run_step (\S+) ", SCRIPT.read_text(), re.MULTILINE))
    assert set(emf.TIMED_STEPS) - {"boot"} <= steps


def test_without_a_namespace_no_metric_lines(sandbox: Sandbox) -> None:
    sandbox.run()

    assert step_documents(sandbox) == []
