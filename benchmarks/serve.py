"""Endpoint latency through the local real-toolkit server: the recipe's handler, the project's modes, the candidates.

    python -m benchmarks.serve            # RoBERTa-base-sized model, ~25-token tweets, every variant
    python -m benchmarks.serve --quick    # tiny models, a few requests: the smoke `make test` runs

Every variant is packaged as model.tar.gz (training.package, so the int8 ONNX graph is exported as
for the endpoint) and served by `inference.serve.LocalEndpoint`, the same SageMaker toolkit +
TorchServe stack the endpoint runs, one worker, on loopback. For each: cold start (process start
to the first successful invocation), then POST /invocations one at a time and from 4 concurrent
clients: p50, p99, requests/s. Latency depends on the shapes, not the weights: the served model
has random weights.

Label agreement with fp32 needs a model with real margins: benchmarks.sentiment_model fine-tunes a
small RoBERTa on generated sentiment texts (cached under --cache), which is packaged the same way;
each mode labels held-out texts in-process with the handler's own model_fn/predict_fn.

The candidates (benchmarks/candidates.py) are measured the same way; they are not handler modes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime
import torch
import transformers

from benchmarks import candidates
from benchmarks.sentiment_model import Recipe, sentiment_rows, trained_model
from benchmarks.synthetic import WORDS, build_model
from inference import inference as handler
from inference.serve import LocalEndpoint, free_port, post_invocation
from training.arguments import DEFAULT_LABELS
from training.onnx_export import export_fp32, quantize_int8
from training.package import build_model_archive

REPO = Path(__file__).resolve().parent.parent
HANDLERS = {
    "recipe": REPO / "benchmarks" / "recipe_handler" / "inference.py",  # the blog post's, fp32 pipeline
    "project": REPO / "inference" / "inference.py",
    "candidates": Path(candidates.__file__),  # appended to the project's: candidate_handler_source()
}
# name -> (handler, INFERENCE_MODE); the recipe's handler ignores INFERENCE_MODE.
VARIANTS = {
    "recipe": ("recipe", "fp32"),
    "fp32": ("project", "fp32"),
    "bf16": ("project", "bf16"),
    "int8": ("project", "int8"),
    **{name: ("candidates", name) for name in candidates.CANDIDATES},
}
TWEET_TOKENS = 25  # <s> and </s> included: one synthetic word is one token
CLIENTS = 4


@dataclass
class Plan:
    size: str
    sequential: int
    concurrent: int
    agreement_texts: int
    agreement_model: Recipe


FULL = Plan(
    size="base",
    sequential=300,
    concurrent=400,
    agreement_texts=3000,
    agreement_model=Recipe("small", 8000, 1000, 2, 3e-4),
)
QUICK = Plan(
    size="tiny", sequential=20, concurrent=20, agreement_texts=60, agreement_model=Recipe("tiny", 300, 60, 1, 1e-3)
)


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    requests_per_s: float

    @classmethod
    def of(cls, seconds: list[float], wall: float) -> Latency:
        ordered = sorted(seconds)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return cls(1000 * statistics.median(ordered), 1000 * p99, len(ordered) / wall)


@dataclass
class Result:
    variant: str
    cold_start_s: float
    sequential: Latency
    concurrent: Latency
    speedup_p50_vs_recipe: float = 1.0
    label_agreement_vs_fp32: float | None = None


def tweets(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=TWEET_TOKENS - 2)) for _ in range(count)]


def timed_post(url: str, text: str) -> float:
    started = time.perf_counter()
    status, body = post_invocation(url, text.encode())
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"invocation failed: {status} {body[:300]!r}")
    return elapsed


def sequential(url: str, texts: list[str]) -> Latency:
    started = time.perf_counter()
    seconds = [timed_post(url, text) for text in texts]
    return Latency.of(seconds, time.perf_counter() - started)


def concurrent(url: str, texts: list[str]) -> Latency:
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        seconds = list(pool.map(lambda text: timed_post(url, text), texts))
    return Latency.of(seconds, time.perf_counter() - started)


def candidate_handler_source() -> str:
    """The project's handler with benchmarks/candidates.py appended, less its import of the handler's
    names (they are defined above it there), and its candidates added to the handler's modes."""
    own = HANDLERS["candidates"].read_text().splitlines()
    kept = [line for line in own if not line.startswith(candidates.HANDLER_IMPORT)]
    if len(kept) != len(own) - 1:
        raise RuntimeError(
            f"{HANDLERS['candidates']} must import the handler in one `{candidates.HANDLER_IMPORT}` line"
        )
    project = HANDLERS["project"].read_text()
    return "\n".join([project, "", "# benchmarks/candidates.py", *kept, "PREPARERS.update(CANDIDATES)", ""])


def package(model_dir: Path, handler_name: str, workdir: Path) -> Path:
    """model.tar.gz with `handler_name`'s handler as code/inference.py and the project's requirements."""
    code_dir = Path(tempfile.mkdtemp(prefix=f"code-{handler_name}-", dir=workdir))
    source = candidate_handler_source() if handler_name == "candidates" else HANDLERS[handler_name].read_text()
    (code_dir / "inference.py").write_text(source)
    shutil.copy(REPO / "inference" / "requirements.txt", code_dir)
    return build_model_archive(model_dir, code_dir, code_dir.with_suffix(".tar.gz"))


def add_candidate_graphs(model_dir: Path) -> None:
    """The ONNX files the candidates load, beside the weights (so in the candidates' archives too)."""
    fp32 = export_fp32(model_dir, model_dir / candidates.ONNX_FP32_FILE)
    quantize_int8(fp32, model_dir / candidates.ONNX_INT8_PER_TENSOR_FILE, per_channel=False)


def serve_and_measure(name: str, archive: Path, mode: str, plan: Plan) -> Result:
    texts = tweets(plan.sequential + plan.concurrent, seed=1)
    started = time.perf_counter()
    with LocalEndpoint(archive, port=free_port(), env={"INFERENCE_MODE": mode}, startup_timeout=600) as endpoint:
        cold_start = time.perf_counter() - started
        for text in texts[:10]:  # warm the worker's caches before timing
            timed_post(endpoint.url, text)
        alone = sequential(endpoint.url, texts[: plan.sequential])
        together = concurrent(endpoint.url, texts[plan.sequential :])
    return Result(name, cold_start, alone, together)


@contextmanager
def inference_mode(mode: str) -> Iterator[None]:
    """INFERENCE_MODE=`mode`, with the candidates among the handler's modes."""
    previous = os.environ.get("INFERENCE_MODE")
    os.environ["INFERENCE_MODE"] = mode
    added = {name: preparer for name, preparer in candidates.CANDIDATES.items() if name not in handler.PREPARERS}
    handler.PREPARERS.update(added)
    try:
        yield
    finally:
        for name in added:
            del handler.PREPARERS[name]
        if previous is None:
            del os.environ["INFERENCE_MODE"]
        else:
            os.environ["INFERENCE_MODE"] = previous


def predictions(model_dir: Path, mode: str, texts: list[str]) -> list[dict[str, float | str]]:
    """The handler's own model_fn/predict_fn in this process, 32 texts per call."""
    with inference_mode(mode):
        classifier = handler.model_fn(str(model_dir))
    predicted: list[dict[str, float | str]] = []
    for start in range(0, len(texts), 32):
        predicted += handler.predict_fn(handler.Texts(texts[start : start + 32], batch=True), classifier)  # type: ignore[arg-type]
    return predicted


def unpacked(archive: Path, directory: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory


@dataclass
class Agreement:
    """How each mode's labels on held-out texts compare with fp32's, on the trained model."""

    model: Recipe
    texts: int
    fp32_accuracy: float  # against the rule that labelled the texts: how well the model learnt it
    fp32_label_counts: dict[str, int]
    fp32_low_confidence_share: float  # texts whose fp32 top probability is under 0.8
    vs_fp32: dict[str, float]


def agreement(plan: Plan, modes: list[str], cache: Path, workdir: Path) -> Agreement:
    """Packages the trained model as the endpoint gets it, then labels held-out texts with each mode."""
    trained = trained_model(cache, plan.agreement_model)
    model_dir = unpacked(package(trained, "project", workdir), workdir / "agreement-model")
    if set(modes) & set(candidates.CANDIDATES):
        add_candidate_graphs(model_dir)
    rows = sentiment_rows(plan.agreement_texts, seed=2)
    texts = [str(row["text"]) for row in rows]
    reference = predictions(model_dir, "fp32", texts)
    labels = [prediction["sentiment"] for prediction in reference]
    truth = [DEFAULT_LABELS[int(str(row["label"]))] for row in rows]
    return Agreement(
        model=plan.agreement_model,
        texts=len(texts),
        fp32_accuracy=sum(a == b for a, b in zip(labels, truth, strict=True)) / len(texts),
        fp32_label_counts=dict(Counter(str(label) for label in labels)),
        fp32_low_confidence_share=sum(float(p["score"]) < 0.8 for p in reference) / len(texts),
        vs_fp32={
            mode: sum(a == b["sentiment"] for a, b in zip(labels, predictions(model_dir, mode, texts), strict=True))
            / len(texts)
            for mode in modes
        },
    )


def environment() -> dict[str, str]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": _cpu_model(),
        "cores": str(len(os.sched_getaffinity(0))),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} ({platform.machine()})" if names else platform.machine()


def table(results: list[Result]) -> str:
    rows = [
        "| variant | cold start s | seq p50 ms | seq p99 ms | seq req/s | 4 clients p50 ms | 4 clients p99 ms "
        "| 4 clients req/s | p50 speed-up vs recipe | label agreement vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        agree = "-" if r.label_agreement_vs_fp32 is None else f"{100 * r.label_agreement_vs_fp32:.1f}%"
        rows.append(
            f"| {r.variant} | {r.cold_start_s:.1f} | {r.sequential.p50_ms:.1f} | {r.sequential.p99_ms:.1f} "
            f"| {r.sequential.requests_per_s:.1f} | {r.concurrent.p50_ms:.1f} | {r.concurrent.p99_ms:.1f} "
            f"| {r.concurrent.requests_per_s:.1f} | {r.speedup_p50_vs_recipe:.2f}x | {agree} |"
        )
    return "\n".join(rows)


def run(plan: Plan, variants: list[str], cache: Path, workdir: Path) -> tuple[list[Result], Agreement]:
    model_dir = build_model(workdir / "model", plan.size)
    kinds = {VARIANTS[name][0] for name in variants}
    archives = {kind: package(model_dir, kind, workdir) for kind in kinds - {"candidates"}}
    if "candidates" in kinds:  # only their archive carries their graphs (600 MB more for base)
        with_graphs = Path(shutil.copytree(model_dir, workdir / "model-with-candidate-graphs", copy_function=os.link))
        add_candidate_graphs(with_graphs)
        archives["candidates"] = package(with_graphs, "candidates", workdir)
    results = [serve_and_measure(name, archives[VARIANTS[name][0]], VARIANTS[name][1], plan) for name in variants]
    if "recipe" in variants:
        baseline = results[variants.index("recipe")].sequential.p50_ms
        for result in results:
            result.speedup_p50_vs_recipe = baseline / result.sequential.p50_ms
    checked = [name for name in variants if name not in ("recipe", "fp32")]
    agreed = agreement(plan, checked, cache, workdir)
    for result in results:
        result.label_agreement_vs_fp32 = agreed.vs_fp32.get(result.variant)
    return results, agreed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and few requests: a smoke test")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--output", type=Path, default=REPO / "build" / "bench-serve.json")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "bench-serve-cache", help="trained models")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    plan = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as workdir:
        results, agreed = run(plan, variants, args.cache, Path(workdir))
    report = {
        "environment": environment(),
        "plan": asdict(plan),
        "agreement": asdict(agreed),
        "results": [asdict(r) for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(
        f"agreement model: fp32 accuracy {100 * agreed.fp32_accuracy:.1f}% on {agreed.texts} held-out texts, "
        f"labels {agreed.fp32_label_counts}, {100 * agreed.fp32_low_confidence_share:.0f}% under 0.8 confidence"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
