"""The charts draw the measured JSON: one bar per row it has, the recipe as the reference, nothing without rows."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from benchmarks.charts import REFERENCE, chart, serve_figure, train_figure

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
TRAIN_REPORT = RESULTS / "bench-train-cpu-smoke.json"
SERVE_REPORT = RESULTS / "bench-serve.json"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def bars(axes: Axes) -> list[Rectangle]:
    return [patch for patch in axes.patches if isinstance(patch, Rectangle)]


def test_training_chart_has_a_bar_per_measured_configuration() -> None:
    report = load(TRAIN_REPORT)
    figure = train_figure(report)
    assert figure is not None
    (axes,) = figure.axes
    rows = report["results"] + (report.get("anchor") or {}).get("results", [])
    assert [bar.get_width() for bar in bars(axes)] == [row["samples_per_s"] for row in rows]
    labels = [label.get_text() for label in axes.get_yticklabels()]
    assert [label.split(" (batch")[0] for label in labels[: len(report["results"])]] == [
        row["label"] for row in report["results"]
    ]
    assert "not a performance result" in axes.get_title()  # a CPU smoke says so


def test_serving_chart_has_p50_and_p99_per_row_with_the_recipe_as_reference() -> None:
    report = load(SERVE_REPORT)
    extra = copy.deepcopy(report["results"][-1])  # a mode added later (another branch) appears as drawn
    extra["variant"] = "new-mode"
    report["results"].append(extra)
    figure = serve_figure(report)
    assert figure is not None
    (axes,) = figure.axes
    rows = report["results"]
    heights = [bar.get_height() for bar in bars(axes)]
    assert heights == [row["sequential"]["p50_ms"] for row in rows] + [row["sequential"]["p99_ms"] for row in rows]
    assert [label.get_text() for label in axes.get_xticklabels()] == [row["variant"] for row in rows]
    colours = [to_hex(bar.get_facecolor()) for bar in bars(axes)[: len(rows)]]
    assert [colour == REFERENCE for colour in colours] == [row["variant"] == "recipe" for row in rows]
    (reference_line,) = axes.get_lines()
    assert np.asarray(reference_line.get_ydata())[0] == rows[0]["sequential"]["p50_ms"]


@pytest.mark.parametrize("report", [TRAIN_REPORT, SERVE_REPORT])
def test_a_chart_is_written_next_to_its_json_and_only_with_rows(report: Path, tmp_path: Path) -> None:
    copied = tmp_path / report.name
    shutil.copy(report, copied)
    written = chart(copied)
    assert written == copied.with_suffix(".png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (RESULTS / written.name).is_file()  # the docs show the chart of the committed JSON

    empty = load(report)
    empty["results"], empty["anchor"] = [], None
    unmeasured = tmp_path / "unmeasured.json"
    unmeasured.write_text(json.dumps(empty))
    assert chart(unmeasured) is None
    assert not unmeasured.with_suffix(".png").exists()
