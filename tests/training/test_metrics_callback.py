"""The Trainer callback's EMF lines: one per epoch for loss, eval loss, recall and samples/s, valid EMF, run id."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from tests.emf_spec import parse_emf
from training import emf
from training.metrics_callback import MetricsCallback, metrics_callbacks

NAMESPACE = "team2/training"


def emf_documents(text: str) -> list[dict[str, Any]]:
    return [parse_emf(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def values(documents: list[dict[str, Any]], metric: str) -> list[float]:
    return [document[metric] for document in documents if metric in document]


def test_a_training_run_writes_each_epochs_metrics_as_emf(
    tmp_path: Path,
    run_training: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(emf.NAMESPACE_VARIABLE, NAMESPACE)
    monkeypatch.setenv(emf.RUN_ID_VARIABLE, "exp-42")
    metrics = run_training(tmp_path)

    documents = emf_documents(capfd.readouterr().out)
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [[emf.RUN_DIMENSION]]
        assert document[emf.RUN_DIMENSION] == "exp-42"
    losses = values(documents, emf.TRAIN_LOSS)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert len(values(documents, emf.SAMPLES_PER_SECOND)) == 2
    assert all(rate > 0 for rate in values(documents, emf.SAMPLES_PER_SECOND))
    # Two epochs, then main()'s final evaluation of the best model, which metrics.json reports.
    recalls = values(documents, emf.EVAL_RECALL)
    assert len(recalls) == 3 == len(values(documents, emf.EVAL_LOSS))
    assert recalls[-1] == pytest.approx(metrics["eval_recall"])


def state(rank_zero: bool) -> TrainerState:
    trainer_state = TrainerState(epoch=1.0, global_step=15)
    trainer_state.is_world_process_zero = rank_zero
    return trainer_state


def test_only_rank_zero_writes_and_test_split_metrics_are_left_out(tmp_path: Path) -> None:
    stream = io.StringIO()
    callback = MetricsCallback(NAMESPACE, "run-1", stream)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    control = TrainerControl()

    callback.on_evaluate(args, state(rank_zero=False), control, metrics={"eval_loss": 0.5, "eval_recall": 0.7})
    assert stream.getvalue() == ""
    callback.on_evaluate(args, state(rank_zero=True), control, metrics={"test_loss": 0.5, "test_recall": 0.7})
    assert stream.getvalue() == ""
    callback.on_evaluate(args, state(rank_zero=True), control, metrics={"eval_loss": 0.5, "eval_recall": 0.7})
    (document,) = emf_documents(stream.getvalue())
    assert (document[emf.EVAL_LOSS], document[emf.EVAL_RECALL], document["epoch"]) == (0.5, 0.7, 1.0)


def test_no_namespace_means_no_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(emf.NAMESPACE_VARIABLE, raising=False)
    assert metrics_callbacks() == []
    monkeypatch.setenv(emf.NAMESPACE_VARIABLE, NAMESPACE)
    monkeypatch.delenv(emf.RUN_ID_VARIABLE, raising=False)
    (callback,) = metrics_callbacks()
    assert isinstance(callback, MetricsCallback)
    assert (callback.namespace, callback.run_id) == (NAMESPACE, "local")
