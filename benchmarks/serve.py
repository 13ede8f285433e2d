"""Endpoint latency through the local real-toolkit server: the recipe's handler against the project's.

    python -m benchmarks.serve            # RoBERTa-base-sized random model, ~25-token tweets
    python -m benchmarks.serve --quick    # tiny model, a few requests: the smoke `make test` runs

Every variant is packaged as model.tar.gz and served by `inference.serve.LocalEndpoint`, the same
SageMaker toolkit + TorchServe stack the endpoint runs, one worker, on loopback. For each: cold
start (process start to the first successful invocation), then POST /invocations one at a time and
from 4 concurrent clients: p50, p99, requests/s. Label agreement of each fast mode with fp32 is
measured in-process with the same handler functions (model_fn, predict_fn), on generated inputs, on
a copy of the model whose random head spreads the labels over all three classes. With random
weights the encoder's features barely differ between inputs, so small numeric errors flip labels
far more easily than in a trained model: a pessimistic proxy, not a measurement of accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from benchmarks.synthetic import WORDS, build_model
from inference import inference as handler
from inference.serve import LocalEndpoint, free_port, post_invocation
from training.package import build_model_archive

REPO = Path(__file__).resolve().parent.parent
RECIPE_CODE = REPO / "benchmarks" / "recipe_handler"
# name -> (handler code, INFERENCE_MODE); the recipe's handler ignores INFERENCE_MODE.
VARIANTS = {
    "recipe": (RECIPE_CODE, "fp32"),
    "fp32": (REPO / "inference", "fp32"),
    "bf16": (REPO / "inference", "bf16"),
    "int8": (REPO / "inference", "int8"),
}
TWEET_TOKENS = 25  # <s> and </s> included: one synthetic word is one token
CLIENTS = 4


@dataclass
class Plan:
    size: str
    sequential: int
    concurrent: int
    agreement_texts: int


FULL = Plan(size="base", sequential=300, concurrent=400, agreement_texts=3000)
QUICK = Plan(size="tiny", sequential=20, concurrent=20, agreement_texts=50)


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


def package(model_dir: Path, code: Path, workdir: Path) -> Path:
    """The recipe's code dir has only its handler: the project's pinned requirements go beside it."""
    code_dir = workdir / f"code-{code.name}"
    code_dir.mkdir()
    shutil.copy(code / "inference.py", code_dir)
    shutil.copy(REPO / "inference" / "requirements.txt", code_dir)
    return build_model_archive(model_dir, code_dir, workdir / f"{code.name}.tar.gz")


def serve_and_measure(name: str, archive: Path, mode: str, plan: Plan) -> Result:
    texts = tweets(plan.sequential + plan.concurrent, seed=1)
    started = time.perf_counter()
    with LocalEndpoint(archive, port=free_port(), env={"INFERENCE_MODE": mode}, startup_timeout=300) as endpoint:
        cold_start = time.perf_counter() - started
        for text in texts[:10]:  # warm the worker's caches before timing
            timed_post(endpoint.url, text)
        alone = sequential(endpoint.url, texts[: plan.sequential])
        together = concurrent(endpoint.url, texts[plan.sequential :])
    return Result(name, cold_start, alone, together)


@contextmanager
def inference_mode(mode: str) -> Iterator[None]:
    previous = os.environ.get("INFERENCE_MODE")
    os.environ["INFERENCE_MODE"] = mode
    try:
        yield
    finally:
        if previous is None:
            del os.environ["INFERENCE_MODE"]
        else:
            os.environ["INFERENCE_MODE"] = previous


def labels(model_dir: Path, mode: str, texts: list[str]) -> list[str]:
    """The handler's own model_fn/predict_fn in this process, 32 texts per call."""
    with inference_mode(mode):
        classifier = handler.model_fn(str(model_dir))
    predicted: list[str] = []
    for start in range(0, len(texts), 32):
        batch = handler.Texts(texts[start : start + 32], batch=True)
        predicted += [result["sentiment"] for result in handler.predict_fn(batch, classifier)]  # type: ignore[index]
    return predicted


def decisive_copy(model_dir: Path, workdir: Path, std: float = 1.0) -> Path:
    """The model with its classification head re-drawn at `std`: the default 0.02 head of a random
    model gives nearly every input the same label, which would make any agreement look perfect."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    torch.manual_seed(0)
    for layer in (model.classifier.dense, model.classifier.out_proj):
        torch.nn.init.normal_(layer.weight, std=std)
    copy = workdir / "decisive-model"
    model.save_pretrained(copy)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(copy)
    return copy


def agreement(model_dir: Path, modes: list[str], count: int) -> tuple[dict[str, float], dict[str, int]]:
    """Share of texts each mode labels as fp32 does, and fp32's label counts (a check on the proxy)."""
    texts = tweets(count, seed=2)
    reference = labels(model_dir, "fp32", texts)
    agreed = {
        mode: sum(a == b for a, b in zip(reference, labels(model_dir, mode, texts), strict=True)) / count
        for mode in modes
    }
    return agreed, dict(Counter(reference))


def environment() -> dict[str, str]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def table(results: list[Result]) -> str:
    rows = [
        "| handler | cold start s | seq p50 ms | seq p99 ms | seq req/s | 4 clients p50 ms | 4 clients p99 ms "
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


def run(plan: Plan, variants: list[str], workdir: Path) -> tuple[list[Result], dict[str, int]]:
    model_dir = build_model(workdir / "model", plan.size)
    archives = {code: package(model_dir, code, workdir) for code in {VARIANTS[name][0] for name in variants}}
    results = [serve_and_measure(name, archives[VARIANTS[name][0]], VARIANTS[name][1], plan) for name in variants]
    if "recipe" in variants:
        baseline = results[variants.index("recipe")].sequential.p50_ms
        for result in results:
            result.speedup_p50_vs_recipe = baseline / result.sequential.p50_ms
    fast_modes = [name for name in variants if name in ("bf16", "int8")]
    agreed, label_counts = agreement(decisive_copy(model_dir, workdir), fast_modes, plan.agreement_texts)
    for result in results:
        result.label_agreement_vs_fp32 = agreed.get(result.variant)
    return results, label_counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and few requests: a smoke test")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--output", type=Path, default=REPO / "build" / "bench-serve.json")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    plan = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as workdir:
        results, label_counts = run(plan, variants, Path(workdir))
    report = {
        "environment": environment(),
        "plan": asdict(plan),
        "agreement_fp32_label_counts": label_counts,
        "results": [asdict(r) for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"fp32 labels of the {plan.agreement_texts} agreement texts: {label_counts}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
