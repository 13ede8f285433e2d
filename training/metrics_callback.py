"""A Trainer callback that prints each epoch's loss, eval loss, macro recall and samples/s as EMF lines.

On the training instance stdout goes through the docker `awslogs` driver to the run's log group, where
CloudWatch extracts the metrics for the dashboard (see training/emf.py). Only rank 0 writes, one line
per event, so lines of several processes never interleave. Without METRICS_NAMESPACE in the
environment (local runs, benchmarks) no callback is registered.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from training import emf

EVAL_KEYS = {emf.EVAL_LOSS: "eval_loss", emf.EVAL_RECALL: "eval_recall"}


class MetricsCallback(TrainerCallback):
    def __init__(self, namespace: str, run_id: str, stream: TextIO | None = None) -> None:
        self.namespace = namespace
        self.run_id = run_id
        self.stream = stream
        self._epoch_started: float | None = None
        self._epoch_first_step = 0

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._epoch_started = time.monotonic()
        self._epoch_first_step = state.global_step

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Samples/s of the epoch's optimizer steps (the eval and checkpoint after it are not counted)."""
        if self._epoch_started is None:
            return
        elapsed = time.monotonic() - self._epoch_started
        steps = state.global_step - self._epoch_first_step
        samples_per_step = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        if steps and elapsed > 0:
            self._write(state, {emf.SAMPLES_PER_SECOND: steps * samples_per_step / elapsed})

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            self._write(state, {emf.TRAIN_LOSS: logs["loss"]})

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Validation only (eval_*): a test-split evaluation reports test_* keys and is not charted per epoch."""
        metrics = metrics or {}
        values = {name: metrics[key] for name, key in EVAL_KEYS.items() if key in metrics}
        if values:
            self._write(state, values)

    def _write(self, state: TrainerState, metrics: dict[str, float]) -> None:
        if not state.is_world_process_zero:
            return
        line = emf.emf_line(
            self.namespace,
            {emf.RUN_DIMENSION: self.run_id},
            {name: float(value) for name, value in metrics.items()},
            emf.UNITS,
            {"epoch": state.epoch, "step": state.global_step},
        )
        stream = self.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()


def metrics_callbacks() -> list[TrainerCallback]:
    """The callback when the bootstrap asked for metrics (METRICS_NAMESPACE and RUN_ID set), else none."""
    namespace = os.environ.get(emf.NAMESPACE_VARIABLE)
    if not namespace:
        return []
    return [MetricsCallback(namespace, os.environ.get(emf.RUN_ID_VARIABLE, "local"))]
