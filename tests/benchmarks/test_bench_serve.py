"""CPU smoke of `make bench-serve`: a tiny model through the real toolkit, every number computed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from benchmarks import candidates, serve


@pytest.mark.slow
def test_quick_serve_benchmark_reports_every_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bench-serve.json"
    serve.main(["--quick", "--variants", "recipe,int8", "--output", str(output), "--cache", str(tmp_path / "cache")])

    report = json.loads(output.read_text())
    recipe, int8 = report["results"]
    assert [recipe["variant"], int8["variant"]] == ["recipe", "int8"]
    for result in (recipe, int8):
        assert result["cold_start_s"] > 0
        for latency in (result["sequential"], result["concurrent"]):
            assert 0 < latency["p50_ms"] <= latency["p99_ms"]
            assert latency["requests_per_s"] > 0
    assert recipe["speedup_p50_vs_recipe"] == 1.0
    assert int8["speedup_p50_vs_recipe"] == pytest.approx(recipe["sequential"]["p50_ms"] / int8["sequential"]["p50_ms"])
    assert recipe["label_agreement_vs_fp32"] is None
    agreement = report["agreement"]
    assert int8["label_agreement_vs_fp32"] == agreement["vs_fp32"]["int8"]
    assert 0 <= int8["label_agreement_vs_fp32"] <= 1
    assert sum(agreement["fp32_label_counts"].values()) == agreement["texts"] == report["plan"]["agreement_texts"]
    assert 0 <= agreement["fp32_accuracy"] <= 1  # a smoke: the quick model trains for a few steps only
    assert agreement["model"]["size"] == "tiny"
    assert report["environment"]["onnxruntime"]
    assert "| int8 |" in capsys.readouterr().out


def test_candidate_handler_is_the_project_handler_with_the_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the toolkit imports as code/inference.py for the candidates: it must load on its own."""
    source = tmp_path / "inference.py"
    source.write_text(serve.candidate_handler_source())
    spec = importlib.util.spec_from_file_location("candidate_handler", source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "candidate_handler", module)  # as an import would, for its dataclasses
    spec.loader.exec_module(module)
    assert set(module.PREPARERS) == {"fp32", "bf16", "int8", *candidates.CANDIDATES}
    assert callable(module.model_fn) and callable(module.predict_fn)
    assert not [line for line in source.read_text().splitlines() if line.startswith(candidates.HANDLER_IMPORT)]


def test_latency_percentiles_come_from_the_samples() -> None:
    latency = serve.Latency.of([0.001 * n for n in range(1, 101)], wall=2.0)
    assert latency.p50_ms == pytest.approx(50.5)
    assert latency.p99_ms == pytest.approx(99.0)
    assert latency.requests_per_s == 50.0


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(SystemExit):
        serve.main(["--quick", "--variants", "onnx"])
