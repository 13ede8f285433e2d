"""A tiny RoBERTa classifier, tokenizer and a learnable tweet-like dataset, made offline in seconds.

Used by `make demo`, the tests and the CPU smokes of the benchmarks: no hub, no download.

The tokenizer is trained with the `tokenizers` library and saved as vocab.json/merges.txt before
loading it through transformers: in transformers 5, `RobertaTokenizerFast(vocab_file=...)` silently
ignores the files and yields an all-`<unk>` tokenizer.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from training.arguments import DEFAULT_LABELS

LABELS = DEFAULT_LABELS  # the tiny model's classes unless a caller names others
# Small enough to train in seconds on a CPU; also the benchmarks' CPU smoke size.
TINY_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

# The words that give each class away, by class id: the first three read as negative, neutral and
# positive, so the recipe's sentence lands on the first class.
CLASS_WORDS = (
    ["awful", "terrible", "hate", "worst", "sad", "angry", "broken", "increasing", "covid"],
    ["today", "meeting", "report", "monday", "weather", "schedule", "update", "train"],
    ["love", "great", "awesome", "happy", "best", "wonderful", "win", "thanks"],
    ["why", "how", "question", "wonder", "maybe", "unsure", "ask", "curious"],
    ["urgent", "asap", "deadline", "hurry", "alert", "quickly", "immediately", "critical"],
)
_FILLER = ["the", "a", "my", "is", "was", "so", "this", "at", "with", "and", "cases", "fast"]


def make_texts(count: int, seed: int = 0, classes: int = len(LABELS)) -> list[tuple[str, int]]:
    """Short tweets whose class id is carried by a few of its words, so a tiny model can learn it."""
    if not 2 <= classes <= len(CLASS_WORDS):
        raise ValueError(f"the tiny data knows 2 to {len(CLASS_WORDS)} classes, not {classes}")
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % classes
        words = rng.choices(_FILLER, k=rng.randint(2, 8)) + rng.choices(CLASS_WORDS[label], k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_dataset(
    directory: Path,
    train: int = 96,
    validation: int = 30,
    test: int = 0,
    seed: int = 0,
    labels: Sequence[str] = LABELS,
    names: bool = False,
) -> Path:
    """Writes train.csv, validation.csv and (if `test`) test.csv with `text` and `label` columns, the
    label as its id into `labels` or, with `names`, as the name; each split is drawn with its own
    seed, so the test split is held out from the other two."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = (("train", train, seed), ("validation", validation, seed + 1), ("test", test, seed + 2))
    for split, count, split_seed in (split for split in splits if split[1]):
        rows = make_texts(count, split_seed, len(labels))
        with (directory / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((text, labels[label] if names else label) for text, label in rows)
    return directory


def build_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    corpus = [text for text, _ in make_texts(300, seed=42, classes=len(CLASS_WORDS))]
    corpus.append("Covid cases are increasing fast!")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=SPECIAL_TOKENS)
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    tokenizer = AutoTokenizer.from_pretrained(str(directory), tokenizer_type="roberta")
    tokenizer.model_max_length = 64
    return tokenizer


def classifier_config(
    tokenizer: PreTrainedTokenizerBase, labels: Sequence[str] = LABELS, /, **sizes: Any
) -> RobertaConfig:
    """A RoBERTa classifier config for `labels` whose special tokens are the tokenizer's; `sizes`
    override RobertaConfig's roberta-base defaults."""
    return RobertaConfig(  # type: ignore[call-arg]  # num_labels & co. go through PreTrainedConfig's kwargs
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **sizes,
    )


def build_model(directory: Path, seed: int = 0, labels: Sequence[str] = LABELS) -> Path:
    """Saves a randomly initialised tiny RoBERTa classifier of `labels` and its tokenizer to `directory`."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(directory)
    config = classifier_config(
        tokenizer,
        labels,
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length + 2,
        **TINY_SIZES,
    )
    RobertaForSequenceClassification(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
