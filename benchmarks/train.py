"""Training throughput of the project's own Trainer path against the original recipe, in one run.

    python -m benchmarks.train                      # GPU: RoBERTa-base; CPU: a tiny model, a smoke only
    python -m benchmarks.train --with-anchor --anchor-script build/anchor/anchor_train_step.py

Every configuration is built by training.train.build_job from its own command-line flags, on a
random-weight RoBERTa classifier and synthetic tweet-length texts (benchmarks.synthetic), so what is
timed is exactly what `python -m training.train` runs. A Trainer callback marks the end of every
optimizer step (a CUDA event on a GPU, read after the run, so timing adds no wait) and notes the steps
that compiled, which separates warm-up (Trainer set-up, sampler, torch.compile, recompiles, CUDA graph
recordings) from the steady state. Prints one Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

from benchmarks import synthetic
from training.arguments import parse_args
from training.train import build_job, setup_summary

TWEET_EVAL_TRAIN_ROWS = 45_615
EPOCHS = 10
PROJECTED_SAMPLES = TWEET_EVAL_TRAIN_ROWS * EPOCHS  # 456,150: the recipe's 10 epochs of tweet_eval sentiment
TARGET_WALL_S = 60.0
VALIDATION_ROWS = 64  # build_job wants a validation split; the benchmark never evaluates
OUTLIER = 5.0  # a step this many times the steady median (a compile or recompile) still counts as warm-up
FLOP_FORMULA = (
    "6 x encoder-layer parameters x tokens (forward + backward matmuls; embeddings are lookups, "
    "attention-score matmuls and the classifier head are left out), as the anchor script counts"
)
DEFAULT_ANCHOR_SCRIPTS = ("build/anchor/anchor_train_step.py", "../shared/bench/anchor_train_step.py")
RECIPE_PAD = ("--pad-to-max-length", "--max-length", str(synthetic.MAX_LENGTH))
# Same optimisation as the project default, less host work per step: widths 32, 64, 96, 128 (the inputs'
# longest is 128, so the cap truncates nothing) at batch 128 and at each epoch's last, short batch, so at
# most 8 shapes, each recorded once as a CUDA graph; collation in 2 worker processes; no per-step waits.
LEAN_STEP = (
    *("--pad-to-multiple-of", "32", "--max-length", str(synthetic.LENGTH_MAX)),
    *("--dataloader-workers", "2", "--run-ahead"),
)


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    batch: int
    flags: tuple[str, ...]
    gpu_steps: int
    dynamic: bool  # dynamic padding with length grouping: the data is the full tweet_eval size

    def run_flags(self, device: str, compile_allowed: bool) -> tuple[str, ...]:
        """On CPU (a smoke) a configuration compiles only where compiling is its point, and only if allowed."""
        compiles = "--compile" in self.flags or "--compile-mode" in self.flags
        if device != "cpu" or (compile_allowed and compiles):
            return self.flags
        mode = self.flags.index("--compile-mode") if "--compile-mode" in self.flags else len(self.flags)
        return (*self.flags[:mode], *self.flags[mode + 2 :], "--no-compile")


CONFIGS = {
    config.name: config
    for config in (
        Config(
            "recipe_fp32",
            "(1) recipe: fp32, pad 512",
            16,
            (*RECIPE_PAD, "--no-bf16", "--no-compile", "--optim", "adamw_torch"),
            gpu_steps=60,
            dynamic=False,
        ),
        Config(
            "recipe_pt2",
            "(2) recipe + bf16, compile, fused AdamW, pad 512",
            16,
            (*RECIPE_PAD, "--bf16", "--compile", "--optim", "adamw_torch_fused"),
            gpu_steps=120,
            dynamic=False,
        ),
        Config(
            "project_default",
            "(3) project default: dynamic padding, length-grouped",
            128,
            (),
            gpu_steps=400,  # one epoch is 357 steps: the steady window covers a whole epoch
            dynamic=True,
        ),
        Config(
            "large_batch",
            "(4) project path, batch 1024 (lr to retune)",
            1024,
            (),
            gpu_steps=80,  # one epoch is 45 steps, ordered longest to shortest (one length-group megabatch)
            dynamic=True,
        ),
        Config(
            "cuda_graphs",
            "(5) lean step: buckets of 32, CUDA graphs (inductor)",
            128,
            (*LEAN_STEP, "--compile-mode", "reduce-overhead"),
            gpu_steps=400,
            dynamic=True,
        ),
        Config(
            "cuda_graphs_unfused",
            "(6) lean step: buckets of 32, CUDA graphs (no inductor)",
            128,
            (*LEAN_STEP, "--compile-mode", "cudagraphs"),
            gpu_steps=400,
            dynamic=True,
        ),
    )
}
ALIASES = {str(index): name for index, name in enumerate(CONFIGS, start=1)}
CPU_STEPS = 3  # one warm-up step, two timed: a smoke, not a measurement


def parse_bench_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"subset of {','.join(CONFIGS)} (or 1-{len(CONFIGS)}), run in this order",
    )
    parser.add_argument(
        "--steps", type=int, help=f"optimizer steps per config (default: per config on GPU, {CPU_STEPS} on CPU)"
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--model-size", choices=("auto", "base", "tiny"), default="auto", help="auto: base on GPU")
    parser.add_argument("--max-device-batch-size", type=int, help="passed to training.train (gradient accumulation)")
    parser.add_argument(
        "--cpu-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on CPU, compile config 2 as it asks (about 40 s of inductor on 2 cores with a cold cache)",
    )
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="after the timed steps, run this many more under torch.profiler (not timed); writes "
        "<output>-<config>-profile.txt and a per-step summary (wall, GPU busy) into the JSON",
    )
    parser.add_argument("--output", type=Path, default=Path("build/bench-train.json"))
    parser.add_argument("--with-anchor", action="store_true", help="also run the anchor script in this run")
    parser.add_argument("--anchor-script", type=Path, help=f"default: the first of {', '.join(DEFAULT_ANCHOR_SCRIPTS)}")
    parser.add_argument("--anchor-configs", default="seed_fp32,dyn_bf16", help="the anchor script's --configs")
    args = parser.parse_args(argv)
    names = [ALIASES.get(name.strip(), name.strip()) for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown or not names:
        parser.error(f"unknown config(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CONFIGS)}")
    args.configs = names
    if args.steps is not None and args.steps < 2:
        parser.error("--steps must be at least 2 (one warm-up step and one timed)")
    if args.profile_steps < 0:
        parser.error("--profile-steps must not be negative")
    return args


# ---- measuring ----


class StepClock(TrainerCallback):
    """When each optimizer step's work ended and which steps compiled; keeps Trainer from evaluating and saving.

    On a GPU each step's end is a CUDA event, read after the run: the clock itself never waits for the
    GPU, so a configuration that lets the host queue steps ahead is timed as it runs, and one whose
    Trainer waits every step is timed with that wait. A step counts as compiled when torch._dynamo's
    compile callbacks fired during it: a compilation or recompilation, a deferred backward compilation,
    or a CUDA graph recording. The benchmark stops mid-epoch (max_steps); the per-epoch evaluation and
    checkpoint of a real run are not part of the step rate, so they are switched off here rather than
    timed by accident.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.begin = 0.0
        self.origin: Any = None
        self.marks: list[Any] = []
        self.compiled: list[bool] = []
        self._compiling = False

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around trainer.train(): starts from an idle device and listens for compilations."""
        if self.cuda:
            torch.cuda.synchronize()
            self.origin = torch.cuda.Event(enable_timing=True)
        self.begin = time.perf_counter()
        if self.origin is not None:
            self.origin.record()
        torch._dynamo.callback_handler.register_start_callback(self._compile_started)
        try:
            yield
        finally:
            torch._dynamo.callback_handler.remove_start_callback(self._compile_started)
            if self.cuda:
                torch.cuda.synchronize()

    def _compile_started(self, _: Any) -> None:
        self._compiling = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        self.compiled.append(self._compiling)
        self._compiling = False
        control.should_evaluate = control.should_save = False

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        control.should_evaluate = control.should_save = False

    def times(self) -> list[float]:
        """Each step's end on the host's clock (on a GPU: the start plus the device's elapsed time)."""
        if not self.cuda:
            return list(self.marks)
        return [self.begin + self.origin.elapsed_time(mark) / 1e3 for mark in self.marks]


class BatchRecorder:
    """Wraps Trainer.get_batch_samples and records each micro-batch's samples, real and padded tokens.

    Trainer takes every optimizer step's micro-batches through it, in training order, whether they were
    collated in the training loop or in worker processes. The real-token counts stay on the device until
    the run is over, so recording adds no wait for the GPU.
    """

    def __init__(self, fetch: Callable[..., tuple[list[Any], Any]]) -> None:
        self.fetch = fetch
        self.shapes: list[tuple[int, int]] = []
        self.real: list[torch.Tensor] = []

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[list[Any], Any]:
        batches, items = self.fetch(*args, **kwargs)
        for batch in batches:
            mask = batch["attention_mask"]
            self.shapes.append((int(mask.shape[0]), int(mask.numel())))
            self.real.append(mask.sum())
        return batches, items

    def batches(self) -> list[tuple[int, int, int]]:
        real = torch.stack(self.real).tolist() if self.real else []
        return [(samples, tokens, padded) for (samples, padded), tokens in zip(self.shapes, real, strict=True)]


class Profile(TrainerCallback):
    """torch.profiler over the optimizer steps after the timed ones: where a step's time goes, host or GPU.

    A profiler failure (CUPTI and CUDA graphs are young together) costs the profile, not the timing.
    """

    def __init__(self, first: int, steps: int, device: str) -> None:
        self.first, self.steps, self.cuda = first, steps, device == "cuda"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities)
        self.started = self.wall_s = 0.0
        self.error: str | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.first:
            self._synchronize()
            self._guarded(self.profiler.start)
            self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.first + self.steps and not self.error:
            self._synchronize()
            self.wall_s = time.perf_counter() - self.started
            self._guarded(self.profiler.stop)

    def _synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _guarded(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as error:  # reported in the JSON instead
            self.error = f"{type(error).__name__}: {error}"

    def summary(self) -> tuple[dict[str, Any], str]:
        """Per-step wall and GPU busy time, GPU activities per step, and the top operators as text tables."""
        if self.error:
            return {"steps": self.steps, "error": self.error}, self.error
        kernels = [event for event in self.profiler.events() if event.device_type == torch.autograd.DeviceType.CUDA]
        busy_ms = sum(event.time_range.elapsed_us() for event in kernels) / 1e3 / self.steps
        wall_ms = 1e3 * self.wall_s / self.steps
        summary = {
            "steps": self.steps,
            "wall_ms_per_step": wall_ms,
            "gpu_busy_ms_per_step": busy_ms if self.cuda else None,
            "gpu_busy_fraction": busy_ms / wall_ms if self.cuda else None,
            "gpu_activities_per_step": len(kernels) / self.steps if self.cuda else None,
        }
        averages = self.profiler.key_averages()
        tables = [averages.table(sort_by="self_cpu_time_total", row_limit=25)]
        if self.cuda:
            tables.append(averages.table(sort_by="self_device_time_total", row_limit=25))
        return summary, "\n\n".join(tables)


def warmup_steps(durations: Sequence[float], minimum: int) -> int:
    """Steps until the steady state: past the last compile-sized outlier in the first half, at least `minimum`.

    An outlier is a step longer than OUTLIER times the median of the second half. Outliers later than
    the first half stay in the timed window: they are part of what a run costs.
    """
    steady = statistics.median(durations[len(durations) // 2 :])
    late = [i for i, duration in enumerate(durations[: len(durations) // 2]) if duration > OUTLIER * steady]
    return max(minimum, late[-1] + 1 if late else 0)


def one_time_steps(durations: Sequence[float], compiled: Sequence[bool], window: range) -> list[int]:
    """Steps of the window that compiled and took over OUTLIER times its median: a recompile for a shape first
    seen late (the epoch's last, short batch) happens once per run, so it is warm-up wherever it falls. A
    slow step that did not compile stays timed: it may recur."""
    steady = statistics.median(durations[step] for step in window)
    return [step for step in window if compiled[step] and durations[step] > OUTLIER * steady]


def timed_window(count: int, warmup: int, steps_per_epoch: int | None) -> int:
    """Steps to time after warm-up: whole epochs where at least one fits, so the mix of lengths is the epoch's."""
    window = count - warmup
    if steps_per_epoch and window >= steps_per_epoch:
        window -= window % steps_per_epoch
    return window


def bf16_matmul_tflops(device: str) -> float | None:
    """The card's bf16 matmul rate as the anchor script measures it: 20 products of 8192^3 after 3 warm-ups."""
    if device != "cuda":
        return None
    size = 8192
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    rate = 20 * 2 * size**3 / (start.elapsed_time(end) / 1e3) / 1e12
    del a, b
    torch.cuda.empty_cache()
    return rate


def projected_wall_s(warmup_s: float, samples_per_s: float) -> float:
    """A 10-epoch tweet_eval run: warm-up, then every sample at the steady rate (the warm-up's own samples
    are counted again, which errs long by a few seconds at most). Evaluation and checkpoints not included."""
    return warmup_s + PROJECTED_SAMPLES / samples_per_s


# ---- running ----


@dataclass
class Workspace:
    root: Path
    model_dir: Path
    files: dict[int, Path]

    def train_file(self, rows: int) -> Path:
        if rows not in self.files:
            self.files[rows] = synthetic.write_rows(self.root / f"train-{rows}.jsonl", rows, seed=0)
        return self.files[rows]


def train_rows(config: Config, steps: int, device: str) -> int:
    """The full tweet_eval size where length grouping depends on it (GPU); otherwise what the steps use."""
    if config.dynamic and device == "cuda":
        return TWEET_EVAL_TRAIN_ROWS
    return min(TWEET_EVAL_TRAIN_ROWS, config.batch * steps)


def run_config(
    config: Config, args: argparse.Namespace, workspace: Workspace, device: str, matmul_tflops: float | None
) -> dict[str, Any]:
    steps = args.steps or (config.gpu_steps if device == "cuda" else CPU_STEPS)
    rows = train_rows(config, steps + args.profile_steps, device)
    argv = [
        "--output-dir",
        str(workspace.root / config.name),
        "--model-name",
        str(workspace.model_dir),
        "--train-file",
        str(workspace.train_file(rows)),
        "--validation-file",
        str(workspace.root / "validation.jsonl"),
        "--global-batch-size",
        str(config.batch),
        "--max-steps",
        str(steps + args.profile_steps),
        "--no-resume",
        *(["--max-device-batch-size", str(args.max_device_batch_size)] if args.max_device_batch_size else []),
        *config.run_flags(device, args.cpu_compile),
    ]
    started = time.perf_counter()
    trainer = build_job(parse_args(argv)).trainer
    setup_s = time.perf_counter() - started
    clock = StepClock(device)
    recorder = BatchRecorder(trainer.get_batch_samples)
    trainer.get_batch_samples = recorder  # type: ignore[method-assign]
    for noisy in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(noisy)
    trainer.add_callback(clock)
    profile = Profile(steps, args.profile_steps, device) if args.profile_steps else None
    if profile:
        trainer.add_callback(profile)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    lengths: list[int] = [sum(mask) for mask in trainer.train_dataset["attention_mask"]]  # type: ignore[index]
    model = trainer.model
    assert model is not None
    layer_params = sum(int(p.numel()) for name, p in model.named_parameters() if ".layer." in name)
    params = sum(int(p.numel()) for p in model.parameters())
    del model
    setup = setup_summary(trainer, None)

    with clock.running():
        trainer.train()
    peak_gb = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None
    del trainer.get_batch_samples  # the recorder holds the Trainer's own method: let the Trainer go
    release(trainer, device)
    del trainer

    accumulation = setup["gradient_accumulation_steps"]
    batches = recorder.batches()[: steps * accumulation]  # the profiled steps after them are not timed
    result = summarize(
        config, clock.begin, clock.times()[:steps], clock.compiled, batches, accumulation, rows, layer_params
    )
    result.update(
        setup_s=setup_s,
        peak_gpu_memory_gb=peak_gb,
        params=params,
        encoder_layer_params=layer_params,
        train_rows=rows,
        batch_shapes=sorted({(samples, padded // samples) for samples, padded in recorder.shapes}),  # a graph each
        input_tokens_mean=statistics.fmean(lengths),
        input_tokens_std=statistics.pstdev(lengths),
        bf16_fraction=(result["useful_tflops"] / matmul_tflops if matmul_tflops else None),
        setup=setup,
        flags=argv[argv.index("--global-batch-size") :],
        profile=write_profile(profile, args.output, config.name) if profile else None,
    )
    return result


def write_profile(profile: Profile, output: Path, name: str) -> dict[str, Any]:
    """The profile's per-step figures for the JSON; its operator tables go to a text file beside it."""
    summary, tables = profile.summary()
    path = output.with_name(f"{output.stem}-{name}-profile.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{name}: {json.dumps(summary)}\n\n{tables}\n")
    return {**summary, "tables": str(path)}


def summarize(
    config: Config,
    begin: float,
    times: list[float],
    compiled: list[bool],
    batches: list[tuple[int, int, int]],
    accumulation: int,
    rows: int,
    layer_params: int,
) -> dict[str, Any]:
    """Step rate over the steady window. Warm-up is from trainer.train() to the end of the last warm-up step,
    plus the window's one-time steps (late recompiles), which the rate leaves out."""
    if len(times) < 2 or len(batches) < len(times) * accumulation:
        raise RuntimeError(f"{config.name}: {len(times)} steps and {len(batches)} batches recorded; cannot time it")
    ends = [begin, *times]
    durations = [b - a for a, b in itertools.pairwise(ends)]
    warmup = warmup_steps(durations, minimum=1 if len(durations) < 10 else 3)
    warmup = min(warmup, len(durations) - 1)
    steps_per_epoch = math.ceil(rows / config.batch) if config.dynamic else None
    window = range(warmup, warmup + timed_window(len(durations), warmup, steps_per_epoch))
    late = one_time_steps(durations, compiled, window)
    timed = [step for step in window if step not in late]
    timed_s = sum(durations[step] for step in timed)
    per_step = [
        tuple(sum(values) for values in zip(*batches[step * accumulation : (step + 1) * accumulation], strict=True))
        for step in timed
    ]
    samples, real, padded = (sum(values) for values in zip(*per_step, strict=True))
    samples_per_s = samples / timed_s
    warmup_s = ends[warmup] - begin + sum(durations[step] for step in late)
    return {
        "config": config.name,
        "label": config.label,
        "global_batch": config.batch,
        "steps": len(durations),
        "warmup_steps": warmup,
        "one_time_steps": len(late),
        "timed_steps": len(timed),
        "compiled_steps": sum(compiled[: len(durations)]),
        "warmup_s": warmup_s,
        "first_step_s": durations[0],
        "timed_s": timed_s,
        "step_ms_median": 1e3 * statistics.median(durations[step] for step in timed),
        "samples_per_s": samples_per_s,
        "real_tokens_per_s": real / timed_s,
        "padded_tokens_per_s": padded / timed_s,
        "padding_fraction": 1 - real / padded,
        "useful_tflops": 6 * layer_params * real / timed_s / 1e12,
        "processed_tflops": 6 * layer_params * padded / timed_s / 1e12,
        "projected_10_epoch_s": projected_wall_s(warmup_s, samples_per_s),
    }


def try_config(
    config: Config, args: argparse.Namespace, workspace: Workspace, device: str, matmul_tflops: float | None
) -> dict[str, Any] | str:
    """The configuration's result, or why it failed: on a GPU lent for minutes, one configuration's failure
    (a CUDA graph error, say) must not cost the others their measurement."""
    try:
        return run_config(config, args, workspace, device, matmul_tflops)
    except Exception as error:  # reported in the JSON and the exit status
        traceback.print_exc()
        return f"{type(error).__name__}: {error}"


def free_device(device: str) -> None:
    """Collects what a finished or failed configuration left: its Trainer's cycles, compiled graphs, cached blocks."""
    gc.collect()
    torch._dynamo.reset()
    if device == "cuda":
        torch.cuda.empty_cache()


def release(trainer: Trainer, device: str) -> None:
    """Drops the Trainer's model, optimizer and compiled graphs, so the next configuration's peak memory
    is its own. The caller's reference to `trainer` must be gone too (the model is checked to be freed)."""
    model = weakref.ref(trainer.model) if trainer.model is not None else None
    trainer.accelerator.free_memory()
    trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None  # type: ignore[assignment]
    trainer.callback_handler.model = trainer.callback_handler.optimizer = None
    del trainer
    free_device(device)
    if model is not None and model() is not None:
        print("warning: the previous configuration's model is still referenced; peak memory may include it")


def find_anchor_script(given: Path | None) -> Path:
    candidates = [given] if given else [Path(path) for path in DEFAULT_ANCHOR_SCRIPTS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit(
        f"error: anchor script not found (looked at {', '.join(map(str, candidates))}); see --anchor-script"
    )


def run_anchor(script: Path, configs: str, device: str) -> dict[str, Any]:
    """The anchor script (plain PyTorch, not project code) in a child process, on the same card in the same run."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(script), "--configs", configs, *(["--tiny"] if device == "cpu" else [])]
        env = {**os.environ, "OUT": out, **({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {})}
        completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=1800)
        if completed.returncode:
            raise SystemExit(f"error: anchor script failed:\n{completed.stderr[-3000:]}")
        anchor: dict[str, Any] = json.loads((Path(out) / "anchor_train_step.json").read_text())
    anchor["script"] = str(script)
    for result in anchor["results"]:
        result["projected_10_epoch_s"] = projected_wall_s(result["warmup_s"], result["samples_per_s"])
    return anchor


# ---- reporting ----


def _number(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def table(report: dict[str, Any]) -> str:
    """One Markdown table: the project's configurations in their numbered order, then the anchor's rows."""
    base = next((r["samples_per_s"] for r in report["results"] if r["config"] == "recipe_fp32"), None)
    peak = report["info"]["bf16_matmul_tflops"]
    lines = [
        "| configuration | batch | samples/s | real tokens/s | useful TFLOP/s | of bf16 peak | processed TFLOP/s "
        "| warm-up s (steps) | peak GPU GB | 10 epochs s | vs (1) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(report["results"], key=lambda result: list(CONFIGS).index(result["config"])):
        lines.append(
            f"| {r['label']} | {r['global_batch']} | {_number(r['samples_per_s'])} | {_number(r['real_tokens_per_s'])} "
            f"| {_tflops(r['useful_tflops'])} | {_number(r['bf16_fraction'] and 100 * r['bf16_fraction'], 1, '%')} "
            f"| {_tflops(r['processed_tflops'])} "
            f"| {r['warmup_s']:.1f} ({_warmup_steps(r)}) | {_number(r['peak_gpu_memory_gb'], 1)} "
            f"| {_number(r['projected_10_epoch_s'])} | {_ratio(r['samples_per_s'], base)} |"
        )
    for r in (report.get("anchor") or {}).get("results", []):
        fraction = r["achieved_tflops"] / peak if peak else None
        lines.append(
            f"| anchor script: {r['config']} | {r['batch']} | {_number(r['samples_per_s'])} "
            f"| {_number(r['real_tokens_per_s'])} | {_tflops(r['achieved_tflops'])} "
            f"| {_number(fraction and 100 * fraction, 1, '%')} | - | {r['warmup_s']:.1f} "
            f"| {_number(r['peak_mem_gb'] or None, 1)} | {_number(r['projected_10_epoch_s'])} "
            f"| {_ratio(r['samples_per_s'], base)} |"
        )
    return "\n".join(lines)


def _warmup_steps(result: dict[str, Any]) -> str:
    late = result.get("one_time_steps")
    return f"{result['warmup_steps']}+{late}" if late else str(result["warmup_steps"])


def _tflops(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def machine_info(device: str, size: str, matmul_tflops: float | None) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu: {cpu_name()}",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model_size": size,
        "bf16_matmul_tflops": matmul_tflops,
        "input_lengths": synthetic.LENGTH_DISTRIBUTION,
        "flop_formula": FLOP_FORMULA,
        "projected_samples": PROJECTED_SAMPLES,
        "target_wall_s": TARGET_WALL_S,
        "note": None if device == "cuda" else f"CPU smoke ({size} model): not a performance result",
    }


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_report(path: Path, report: dict[str, Any]) -> None:
    report["table"] = table(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible")
    if requested == "cpu" and torch.cuda.is_available():
        # build_job trains on the GPU whenever torch sees one; hide it before CUDA is initialised.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if torch.cuda.is_available():
            raise SystemExit("error: --device cpu: CUDA was initialised already; set CUDA_VISIBLE_DEVICES=''")
    return requested


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silences the progress bars and INFO lines of datasets and transformers for the run."""
    import datasets

    datasets.disable_progress_bars()
    transformers.logging.disable_progress_bar()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
        datasets.enable_progress_bars()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_bench_args(argv)
    device = resolve_device(args.device)
    size = args.model_size if args.model_size != "auto" else ("base" if device == "cuda" else "tiny")
    anchor_script = find_anchor_script(args.anchor_script) if args.with_anchor else None
    matmul_tflops = bf16_matmul_tflops(device)
    report: dict[str, Any] = {
        "info": machine_info(device, size, matmul_tflops),
        "results": [],
        "failed": {},
        "anchor": None,
    }
    print(f"training benchmark on {report['info']['device']}, {size} model, configs {', '.join(args.configs)}")
    if anchor_script:  # first: it is short, and a run cut off at a time limit still has the reference
        report["anchor"] = run_anchor(anchor_script, args.anchor_configs, device)
        write_report(args.output, report)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as root, quiet():
        workspace = Workspace(Path(root), synthetic.build_model(Path(root) / "model", size), {})
        synthetic.write_rows(Path(root) / "validation.jsonl", VALIDATION_ROWS, seed=1)
        for name in args.configs:
            result = try_config(CONFIGS[name], args, workspace, device, matmul_tflops)
            if isinstance(result, str):
                report["failed"][name] = result
                free_device(device)
                print(f"  {name}: failed: {result}", flush=True)
            else:
                report["results"].append(result)
                print(
                    f"  {name}: {result['samples_per_s']:,.0f} samples/s, warm-up {result['warmup_s']:.1f} s, "
                    f"{result['timed_steps']} steps timed",
                    flush=True,
                )
            write_report(args.output, report)  # a partial report survives a later failure or timeout
    print(report["table"])
    print(f"input lengths: {synthetic.LENGTH_DISTRIBUTION}; FLOPs: {FLOP_FORMULA}")
    if report["info"]["note"]:
        print(report["info"]["note"])
    print(f"wrote {args.output}")
    if report["failed"]:
        raise SystemExit(f"error: configuration(s) failed: {', '.join(report['failed'])} (see 'failed' in the JSON)")
    return report


if __name__ == "__main__":
    main()
