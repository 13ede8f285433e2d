"""A RoBERTa classifier fine-tuned here on generated sentiment texts, for the inference benchmark's agreement check.

A random-weight model is no test of int8 or bf16: its features barely differ between inputs, so
tiny numeric errors flip labels that a trained model would not flip, while its default head gives
nearly every input one label, which hides every flip. This model is trained, by the project's own
`python -m training.train`, on a task with real decision boundaries:

- the texts are the benchmark's synthetic tweets (benchmarks.synthetic: tweet-length, one token per word);
- 40 of the 676 words are positive and 40 negative; a text is positive if it has more positive
  than negative words, negative if fewer, neutral if as many. Six texts in ten are one word away
  from another label, so the trained model meets low-margin inputs, as a real sentiment model does.

Training takes minutes on 2 cores, so the model is cached under the given directory, keyed by
everything that shapes it.
"""

from __future__ import annotations

import fcntl
import json
import random
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.synthetic import WORDS, build_model, tweet_lengths

POLAR_WORDS = 40
_shuffled = random.Random(1234).sample(WORDS, len(WORDS))
POSITIVE, NEGATIVE = frozenset(_shuffled[:POLAR_WORDS]), frozenset(_shuffled[POLAR_WORDS : 2 * POLAR_WORDS])


@dataclass(frozen=True)
class Recipe:
    """What the cached model depends on; the cache key is made of it."""

    size: str
    train_rows: int
    validation_rows: int
    epochs: int
    learning_rate: float
    batch: int = 32
    version: int = 1  # bump when the text generator or the labelling rule changes


def sentiment_label(words: list[str]) -> int:
    """0 negative, 1 neutral, 2 positive (DEFAULT_LABELS): the sign of positive minus negative words."""
    balance = sum((word in POSITIVE) - (word in NEGATIVE) for word in words)
    return 1 + (balance > 0) - (balance < 0)


def sentiment_rows(count: int, seed: int) -> list[dict[str, object]]:
    """`count` texts of tweet length (benchmarks.synthetic's distribution) with their rule label."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for length in tweet_lengths(count, seed):
        words = rng.choices(WORDS, k=length - 2)  # <s> and </s> are the other two tokens
        rows.append({"text": " ".join(words), "label": sentiment_label(words)})
    return rows


def _write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def trained_model(cache: Path, recipe: Recipe) -> Path:
    """The model directory (weights, config, tokenizer), trained now unless the cache has it.

    A second process asking for the same model waits for the first one's training (an flock)."""
    key = "-".join(f"{value}" for value in asdict(recipe).values())
    done = cache / key / "model"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (done / "config.json").is_file():
            _train(cache, key, recipe)
    return done


def _train(cache: Path, key: str, recipe: Recipe) -> None:
    work = cache / f"{key}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    initial = build_model(work / "initial", recipe.size)
    # Seeds apart from the held-out texts' (benchmarks.serve uses seed 2).
    train = _write_rows(work / "train.jsonl", sentiment_rows(recipe.train_rows, seed=10))
    validation = _write_rows(work / "validation.jsonl", sentiment_rows(recipe.validation_rows, seed=11))
    command = [
        *(sys.executable, "-m", "training.train", "--output-dir", str(work / "run")),
        *("--model-name", str(initial), "--train-file", str(train), "--validation-file", str(validation)),
        *("--epochs", str(recipe.epochs), "--learning-rate", str(recipe.learning_rate)),
        *("--global-batch-size", str(recipe.batch), "--no-compile", "--no-bf16", "--optim", "adamw_torch"),
    ]
    print(f"training the agreement model ({recipe}); log in {work / 'train.log'}", flush=True)
    with (work / "train.log").open("w") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode:
            tail = "\n".join((work / "train.log").read_text().splitlines()[-20:])
            raise RuntimeError(f"training the agreement model failed:\n{tail}")
    shutil.rmtree(cache / key, ignore_errors=True)
    (work / "run" / "model").rename(work / "model")
    for leftover in ("run", "initial"):
        shutil.rmtree(work / leftover)
    work.rename(cache / key)
