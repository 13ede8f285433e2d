"""CPU smoke of the training benchmark: every configuration runs through build_job on the tiny model.

Numbers from it mean nothing; what is checked is that the benchmark runs end to end, reports every
configuration, and that its derived figures (projection, ratio, FLOP rate) are computed as documented.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the Hub

from benchmarks import synthetic
from benchmarks.train import CONFIGS, PROJECTED_SAMPLES, main, timed_window, warmup_steps

# The anchor script stands in for ../shared/bench/anchor_train_step.py, which CI may not have: same CLI
# and output file, canned numbers, so the plumbing of --with-anchor is tested without its run time.
FAKE_ANCHOR = textwrap.dedent(
    """
    import argparse, json, os
    p = argparse.ArgumentParser()
    p.add_argument("--configs")
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args()
    assert a.tiny
    rows = [dict(config=c, batch=16, samples_per_s=100.0, real_tokens_per_s=3400.0, achieved_tflops=0.5,
                 warmup_s=2.0, timed_s=1.0, peak_mem_gb=0.0) for c in a.configs.split(",")]
    json.dump(dict(info=dict(device="cpu", bf16_matmul_tflops=0.0), results=rows),
              open(os.path.join(os.environ["OUT"], "anchor_train_step.json"), "w"))
    """
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One CPU run of all four configurations (compile off: inductor alone would take ~40 s on 2 cores)."""
    root = tmp_path_factory.mktemp("bench-train")
    anchor = root / "anchor_train_step.py"
    anchor.write_text(FAKE_ANCHOR)
    output = root / "bench-train.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(
            [
                "--device",
                "cpu",
                "--no-cpu-compile",
                "--output",
                str(output),
                "--with-anchor",
                "--anchor-script",
                str(anchor),
            ]
        )
    return json.loads(output.read_text()), output, printed.getvalue()


def test_every_configuration_reports_a_positive_rate(smoke: tuple[dict[str, Any], Path, str]) -> None:
    report, _, _ = smoke
    assert [result["config"] for result in report["results"]] == list(CONFIGS)
    for result in report["results"]:
        assert result["samples_per_s"] > 0
        assert result["real_tokens_per_s"] > 0
        assert result["padded_tokens_per_s"] >= result["real_tokens_per_s"]
        assert result["timed_steps"] >= 1
        assert result["warmup_steps"] + result["timed_steps"] <= result["steps"]
        assert result["setup"]["global_batch_size"] == result["global_batch"]
    assert report["info"]["note"] == "CPU smoke (tiny model): not a performance result"


def test_configurations_get_the_flags_they_name(smoke: tuple[dict[str, Any], Path, str]) -> None:
    setups = {result["config"]: result["setup"] for result in smoke[0]["results"]}
    assert (setups["recipe_fp32"]["bf16"], setups["recipe_fp32"]["optim"]) == (False, "adamw_torch")
    assert (setups["recipe_pt2"]["bf16"], setups["recipe_pt2"]["optim"]) == (True, "adamw_torch_fused")
    assert setups["recipe_fp32"]["train_sampling_strategy"].endswith("random")
    assert setups["project_default"]["train_sampling_strategy"].endswith("group_by_length")
    padding = {result["config"]: result["padding_fraction"] for result in smoke[0]["results"]}
    assert padding["recipe_fp32"] > 0.8  # ~35 real tokens of 512
    # Only batch x steps rows on CPU: too few for Trainer's length grouping to group (its megabatch is
    # min(rows // (4 x batch), 50) batches), so dynamic padding alone is what shows here.
    assert padding["project_default"] < padding["recipe_fp32"]


def test_derived_figures_follow_the_documented_formulas(smoke: tuple[dict[str, Any], Path, str]) -> None:
    report, _, _ = smoke
    results = {result["config"]: result for result in report["results"]}
    base = results["recipe_fp32"]["samples_per_s"]
    for result in results.values():
        expected = result["warmup_s"] + PROJECTED_SAMPLES / result["samples_per_s"]
        assert math.isclose(result["projected_10_epoch_s"], expected, rel_tol=1e-9)
        useful = 6 * result["encoder_layer_params"] * result["real_tokens_per_s"] / 1e12
        assert math.isclose(result["useful_tflops"], useful, rel_tol=1e-9)
    assert PROJECTED_SAMPLES == 456_150
    assert math.isclose(results["recipe_fp32"]["samples_per_s"] / base, 1.0)
    assert "| 1.00x |" in next(line for line in report["table"].splitlines() if "(1) recipe" in line)


def test_the_inputs_follow_the_stated_length_distribution(smoke: tuple[dict[str, Any], Path, str]) -> None:
    for result in smoke[0]["results"]:
        assert 28 < result["input_tokens_mean"] < 40
        assert 8 < result["input_tokens_std"] < 20


def test_table_and_anchor_are_printed_and_written(smoke: tuple[dict[str, Any], Path, str]) -> None:
    report, output, printed = smoke
    assert report["table"] in printed
    assert f"wrote {output}" in printed
    assert len(report["table"].splitlines()) == 2 + len(CONFIGS) + 2
    assert [row["config"] for row in report["anchor"]["results"]] == ["seed_fp32", "dyn_bf16"]
    assert "| anchor script: dyn_bf16 |" in report["table"]


def test_synthetic_texts_have_exactly_the_drawn_token_counts(tmp_path: Path) -> None:
    tokenizer = synthetic.build_tokenizer(tmp_path)
    rows = synthetic.synthetic_rows(300, seed=3)
    counts = [len(ids) for ids in tokenizer([str(row["text"]) for row in rows])["input_ids"]]
    assert counts == synthetic.tweet_lengths(300, seed=3)
    assert min(counts) >= synthetic.LENGTH_MIN and max(counts) <= synthetic.LENGTH_MAX


def test_warmup_ends_after_the_last_early_outlier() -> None:
    assert warmup_steps([40.0, 0.1, 0.1, 30.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], minimum=1) == 4
    assert warmup_steps([0.1] * 10, minimum=3) == 3
    assert warmup_steps([9.0, *[0.1] * 8, 5.0], minimum=1) == 1  # a late slow step stays in the timed window


def test_timed_window_covers_whole_epochs_when_one_fits() -> None:
    assert timed_window(80, 10, 45) == 45
    assert timed_window(40, 10, 45) == 30
    assert timed_window(60, 3, None) == 57
