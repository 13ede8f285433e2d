"""PNG charts of the benchmarks' JSON, written next to it (`make bench-train` and `make bench-serve` call this).

    python -m benchmarks.charts build/bench-train.json build/bench-serve.json

Only what a report holds is drawn: one bar per row it has, in its order, titled with the machine and
date it names; a CPU smoke says so in the title. A report without rows gets no chart, so a chart can
never show a number that was not measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

REFERENCE = "#9e9e9e"  # the recipe's bars: what the project is compared against
PROJECT = ("#1f77b4", "#ff7f0e")
ANCHOR = "#2ca02c"
HATCHES = ("", "//")  # p50 plain, p99 hatched


def chart_path(report_path: Path) -> Path:
    return report_path.with_suffix(".png")


def train_figure(report: dict[str, Any]) -> Figure | None:
    """Samples/s per configuration; the anchor script's rows, if it ran, in their own colour."""
    rows = [
        (f"{r['label']} (batch {r['global_batch']})", r["samples_per_s"], _train_colour(r["config"]))
        for r in report["results"]
    ]
    rows += [
        (f"anchor script: {r['config']} (batch {r['batch']})", r["samples_per_s"], ANCHOR)
        for r in (report.get("anchor") or {}).get("results", [])
    ]
    if not rows:
        return None
    info = report["info"]
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.6 * len(rows)))
    labels, values, colours = zip(*rows, strict=True)
    bars = axes.barh(labels, values, color=colours)
    axes.bar_label(bars, labels=[f"{value:,.0f}" for value in values], padding=3)
    axes.invert_yaxis()
    axes.set_xlabel("training samples/s (steady state, higher is better)")
    title = f"Training throughput: {info['device']}, {info['date']}"
    axes.set_title(title + (f"\n{info['note']}" if info.get("note") else ""))
    figure.tight_layout()
    return figure


def _train_colour(config: str) -> str:
    return REFERENCE if config.startswith("recipe") else PROJECT[0]


def serve_figure(report: dict[str, Any]) -> Figure | None:
    """Sequential p50 and p99 per handler; the recipe's handler is the grey reference bar and line."""
    results = report["results"]
    if not results:
        return None
    environment = report["environment"]
    names = [r["variant"] for r in results]
    width = 0.38
    figure, axes = plt.subplots(figsize=(2 + 1.6 * len(results), 5))
    for offset, (key, colour) in enumerate(zip(("p50_ms", "p99_ms"), PROJECT, strict=True)):
        values = [r["sequential"][key] for r in results]
        colours = [REFERENCE if name == "recipe" else colour for name in names]
        positions = [index + (offset - 0.5) * width for index in range(len(results))]
        bars = axes.bar(positions, values, width, color=colours, hatch=HATCHES[offset])
        axes.bar_label(bars, labels=[f"{value:.1f}" for value in values], padding=2, fontsize=8)
    legend: list[Artist] = [
        Patch(facecolor=colour, hatch=hatch, label=key)
        for key, colour, hatch in zip(("p50", "p99"), PROJECT, HATCHES, strict=True)
    ]
    if "recipe" in names:
        recipe_p50 = results[names.index("recipe")]["sequential"]["p50_ms"]
        axes.axhline(recipe_p50, color=REFERENCE, linestyle="--", linewidth=1)
        legend += [
            Patch(facecolor=REFERENCE, label="recipe's handler"),
            Line2D([], [], color=REFERENCE, linestyle="--", label="recipe p50"),
        ]
    axes.set_xticks(range(len(results)), names)
    axes.set_ylabel("latency per request, ms (lower is better)")
    axes.legend(handles=legend)
    axes.set_title(
        f"Local endpoint latency, one client: {environment['cpu']}, {environment['cores']} cores, "
        f"torch {environment['torch']}, {environment['date']}"
    )
    figure.tight_layout()
    return figure


def chart(report_path: Path) -> Path | None:
    """Draws the chart of a bench-train or bench-serve report next to it; None when it has no rows."""
    report = json.loads(report_path.read_text())
    figure = serve_figure(report) if "environment" in report else train_figure(report)
    if figure is None:
        return None
    path = chart_path(report_path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+", help="bench-train or bench-serve JSON files")
    for report in parser.parse_args(argv).reports:
        written = chart(report)
        print(f"wrote {written}" if written else f"{report} has no measured rows: no chart")


if __name__ == "__main__":
    main()
