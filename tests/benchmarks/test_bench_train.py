"""CPU smoke of the training benchmark: every configuration runs through build_job on the tiny model.

Numbers from it mean nothing; what is checked is that the benchmark runs end to end, reports every
configuration, and that its derived figures (projection, ratio, FLOP rate) are computed as documented.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the Hub

from benchmarks import synthetic
from benchmarks.train import CONFIGS, PROJECTED_SAMPLES, main, one_time_steps, summarize, timed_window, warmup_steps

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
    """One CPU run of every configuration (compile off: inductor alone would take ~40-70 s on 2 cores)."""
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


def test_lean_step_configurations_train_on_a_few_bucketed_shapes(smoke: tuple[dict[str, Any], Path, str]) -> None:
    results = {result["config"]: result for result in smoke[0]["results"]}
    for name in ("cuda_graphs", "cuda_graphs_unfused"):
        setup = results[name]["setup"]
        assert (setup["pad_to_multiple_of"], setup["dataloader_workers"], setup["run_ahead"]) == (32, 2, True)
        assert setup["global_batch_size"] == results["project_default"]["setup"]["global_batch_size"]
        assert "--no-compile" in results[name]["flags"]  # the smoke in make test compiles nothing
        assert "--compile-mode" not in results[name]["flags"]
        widths = [width for _, width in results[name]["batch_shapes"]]
        assert widths and all(width % 32 == 0 and width <= synthetic.LENGTH_MAX for width in widths)
    default = results["project_default"]["setup"]
    assert (default["pad_to_multiple_of"], default["dataloader_workers"], default["run_ahead"]) == (8, 0, False)
    assert all(width % 8 == 0 for _, width in results["project_default"]["batch_shapes"])


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


def test_a_late_recompile_counts_as_warm_up_and_a_late_slow_step_does_not() -> None:
    durations = [30.0, *[0.1] * 6, 20.0, 0.1, 0.1, 0.1, 2.0]  # a recompile at step 7, a slow step at 11
    compiled = [True, *[False] * 6, True, False, False, False, False]
    assert one_time_steps(durations, compiled, range(1, 12)) == [7]
    config = CONFIGS["cuda_graphs"]
    batches = [(128, 4000, 4096)] * len(durations)
    times = list(itertools.accumulate(durations))
    result = summarize(config, 0.0, times, compiled, batches, 1, rows=128 * len(durations), layer_params=1)
    assert (result["warmup_steps"], result["one_time_steps"], result["timed_steps"]) == (3, 1, 8)
    assert math.isclose(result["warmup_s"], 30.0 + 0.1 + 0.1 + 20.0)
    assert math.isclose(result["timed_s"], 0.1 * 7 + 2.0)  # the slow step that did not compile stays timed
    assert math.isclose(result["samples_per_s"], 8 * 128 / 2.7)


def test_on_cpu_the_smoke_drops_what_it_cannot_compile() -> None:
    lean = CONFIGS["cuda_graphs"]
    assert lean.run_flags("cuda", compile_allowed=False) == lean.flags
    assert lean.run_flags("cpu", compile_allowed=True) == lean.flags
    dropped = lean.run_flags("cpu", compile_allowed=False)
    assert dropped[-1] == "--no-compile" and "--compile-mode" not in dropped and "reduce-overhead" not in dropped
    assert len(dropped) == len(lean.flags) - 1
    assert CONFIGS["project_default"].run_flags("cpu", compile_allowed=True) == ("--no-compile",)


def test_a_failing_configuration_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    """A CUDA-graph mode cannot accumulate gradients: with micro-batches of 8, configuration (5) is refused
    before it loads anything; (1) still runs, accumulating two micro-batches per step, and is profiled."""
    output = tmp_path / "bench-train.json"
    argv = ["--device", "cpu", "--configs", "5,1", "--max-device-batch-size", "8", "--steps", "2"]
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit, match="failed: cuda_graphs"):
        main([*argv, "--profile-steps", "1", "--output", str(output)])
    report = json.loads(output.read_text())
    assert "cannot accumulate gradients" in report["failed"]["cuda_graphs"]
    (result,) = report["results"]
    assert (result["config"], result["setup"]["gradient_accumulation_steps"], result["timed_steps"]) == (
        "recipe_fp32",
        2,
        1,
    )
    assert result["profile"]["steps"] == 1 and result["profile"]["wall_ms_per_step"] > 0
    assert "aten::" in Path(result["profile"]["tables"]).read_text()  # the operators the profiled step ran


def test_timed_window_covers_whole_epochs_when_one_fits() -> None:
    assert timed_window(80, 10, 45) == 45
    assert timed_window(40, 10, 45) == 30
    assert timed_window(60, 3, None) == 57
