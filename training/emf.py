"""CloudWatch embedded metric format (EMF): the training run's metrics as log lines CloudWatch turns into metrics.

A log event that is one JSON object with an `_aws.CloudWatchMetrics` directive becomes metrics when
it reaches CloudWatch Logs through PutLogEvents (the docker `awslogs` driver, `aws logs
put-log-events`); no header, agent or `cloudwatch:PutMetricData` permission is needed. The training
callback (training/metrics_callback.py), training/bootstrap.sh and the dashboard
(stacks/monitoring.py) all take the names from here. Standard library only: the stacks import it at synth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

# Set by training/bootstrap.sh from the stack (the dashboard reads the same namespace); unset: no EMF lines.
NAMESPACE_VARIABLE = "METRICS_NAMESPACE"
RUN_ID_VARIABLE = "RUN_ID"
RUN_DIMENSION = "RunId"
STEP_DIMENSION = "Step"

# Training metrics, once per epoch from rank 0: metric name -> (Trainer's log key, CloudWatch unit).
TRAIN_LOSS = "TrainLoss"
EVAL_LOSS = "EvalLoss"
EVAL_RECALL = "EvalRecall"
SAMPLES_PER_SECOND = "TrainSamplesPerSecond"
UNITS = {TRAIN_LOSS: "None", EVAL_LOSS: "None", EVAL_RECALL: "None", SAMPLES_PER_SECOND: "Count/Second"}

# Bootstrap: seconds per step of training/bootstrap.sh (`boot` is the instance's uptime when it starts).
STEP_SECONDS = "StepSeconds"
TIMED_STEPS = (
    "boot",
    "fetch-data",  # only with the user's own data files
    "fetch-assets",
    "ecr-login",
    "pull-image",
    "build-image",
    "restore-checkpoints",
    "train",
    "sync-checkpoints",
    "package",
    "upload",
)


def emf_line(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Mapping[str, float],
    units: Mapping[str, str],
    properties: Mapping[str, object] | None = None,
    timestamp_ms: int | None = None,
) -> str:
    """One EMF document on one line: the metrics under one dimension set, plus searchable properties."""
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": units[name]} for name in metrics],
                }
            ],
        },
        **dimensions,
        **metrics,
        **(properties or {}),
    }
    return json.dumps(document, separators=(",", ":"))
