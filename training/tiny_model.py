"""A tiny RoBERTa classifier, tokenizer and a learnable tweet-like dataset, made offline in seconds.

Used by `make demo`, the tests and the CPU smokes of the benchmarks: no hub, no download.

The tokenizer is trained with the `tokenizers` library and saved as vocab.json/merges.txt before
loading it through transformers: in transformers 5, `RobertaTokenizerFast(vocab_file=...)` silently
ignores the files and yields an all-`<unk>` tokenizer.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from training.data import LABELS

# Small enough to train in seconds on a CPU; also the benchmarks' CPU smoke size.
TINY_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

_WORDS = {
    0: ["awful", "terrible", "hate", "worst", "sad", "angry", "broken", "increasing", "covid"],
    1: ["today", "meeting", "report", "monday", "weather", "schedule", "update", "train"],
    2: ["love", "great", "awesome", "happy", "best", "wonderful", "win", "thanks"],
}
_FILLER = ["the", "a", "my", "is", "was", "so", "this", "at", "with", "and", "cases", "fast"]


def make_texts(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """Short tweets whose label is carried by a few sentiment words, so a tiny model can learn it."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % len(LABELS)
        words = rng.choices(_FILLER, k=rng.randint(2, 8)) + rng.choices(_WORDS[label], k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_dataset(directory: Path, train: int = 96, validation: int = 30, test: int = 0, seed: int = 0) -> Path:
    """Writes train.csv, validation.csv and (if `test`) test.csv with `text` and `label` columns; each
    split is drawn with its own seed, so the test split is held out from the other two."""
    directory.mkdir(parents=True, exist_ok=True)
    splits = (("train", train, seed), ("validation", validation, seed + 1), ("test", test, seed + 2))
    for split, count, split_seed in (split for split in splits if split[1]):
        with (directory / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(make_texts(count, split_seed))
    return directory


def build_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    corpus = [text for text, _ in make_texts(300, seed=42)]
    corpus.append("Covid cases are increasing fast!")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=SPECIAL_TOKENS)
    directory.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(directory))
    tokenizer = AutoTokenizer.from_pretrained(str(directory), tokenizer_type="roberta")
    tokenizer.model_max_length = 64
    return tokenizer


def classifier_config(tokenizer: PreTrainedTokenizerBase, **sizes: Any) -> RobertaConfig:
    """A 3-label sentiment RoBERTa config whose special tokens are the tokenizer's; `sizes` override
    RobertaConfig's roberta-base defaults."""
    return RobertaConfig(  # type: ignore[call-arg]  # num_labels & co. go through PreTrainedConfig's kwargs
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **sizes,
    )


def build_model(directory: Path, seed: int = 0) -> Path:
    """Saves a randomly initialised tiny RoBERTa classifier and its tokenizer to `directory`."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(directory)
    config = classifier_config(
        tokenizer, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length + 2, **TINY_SIZES
    )
    RobertaForSequenceClassification(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
