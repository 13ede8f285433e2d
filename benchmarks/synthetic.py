"""Synthetic inputs for the training benchmark: a random-weight RoBERTa classifier and tweet-length texts.

Throughput depends on the architecture and the shapes, not on the weights or the words, so the benchmark
needs no download: a RoBERTa-base-sized model (or a tiny one for the CPU smoke) with random weights, and
texts whose token counts follow tweet_eval's, made with a tokenizer built here in which every word is
exactly one token. The length distribution is the anchor scripts' (../shared/bench): round(N(34, 14))
clamped to 8..128 tokens, counting <s> and </s>, drawn with the same generator and seed.
"""

from __future__ import annotations

import itertools
import json
import random
import string
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, RobertaConfig, RobertaForSequenceClassification

from training.tiny_model import LABELS, TINY_SIZES, classifier_config

LENGTH_MEAN, LENGTH_STD, LENGTH_MIN, LENGTH_MAX = 34, 14, 8, 128
LENGTH_DISTRIBUTION = (
    f"round(N({LENGTH_MEAN}, {LENGTH_STD})) clamped to {LENGTH_MIN}..{LENGTH_MAX} tokens per text, "
    "<s> and </s> included"
)
MAX_LENGTH = 512  # the recipe pads to 512; positions 0..513 as in roberta-base
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3 as in roberta-base; <mask> comes last, also as there
SPACE = "\u0120"  # byte-level BPE's picture of a leading space
WORDS = tuple("".join(pair) for pair in itertools.product(string.ascii_lowercase, repeat=2))  # aa..zz
SMALL_SIZES = {
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
    "tiny": TINY_SIZES,
}


def tweet_lengths(count: int, seed: int = 0) -> list[int]:
    """Token counts per text, the same draw as the anchor scripts' `tweet_lengths(count, seed)`."""
    generator = torch.Generator().manual_seed(seed)
    lengths = (torch.randn(count, generator=generator) * LENGTH_STD + LENGTH_MEAN).round()
    return lengths.clamp(LENGTH_MIN, LENGTH_MAX).long().tolist()


def synthetic_rows(count: int, seed: int = 0) -> list[dict[str, object]]:
    """`count` rows of text and label; each text tokenizes to exactly tweet_lengths(count, seed)[i] tokens."""
    rng = random.Random(seed)
    return [
        {"text": " ".join(rng.choices(WORDS, k=length - 2)), "label": index % len(LABELS)}
        for index, length in enumerate(tweet_lengths(count, seed))
    ]


def write_rows(path: Path, count: int, seed: int = 0) -> Path:
    """Writes a JSON-lines split with `text` and `label`, as training.data.load_splits reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in synthetic_rows(count, seed):
            handle.write(json.dumps(row) + "\n")
    return path


def build_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer in roberta-base's format in which each word of WORDS is one token.

    The vocabulary and merges are written by hand rather than trained, so the token count of a text is
    known exactly: the merges that build "Ġxy" (a word after a space) rank before those that build "xy"
    (the first word), so every word becomes one token whichever position it has.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = [(SPACE, letter) for letter in string.ascii_lowercase]
    merges += [(SPACE + word[0], word[1]) for word in WORDS]
    merges += [(word[0], word[1]) for word in WORDS]
    tokens = [*SPECIALS, *alphabet, *("".join(merge) for merge in merges), "<mask>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = AutoTokenizer.from_pretrained(str(directory), tokenizer_type="roberta")
    tokenizer.model_max_length = MAX_LENGTH
    rows = synthetic_rows(50, seed=99)
    counts = [len(ids) for ids in tokenizer([str(row["text"]) for row in rows])["input_ids"]]
    if counts != tweet_lengths(50, seed=99):
        raise RuntimeError("the synthetic tokenizer does not give one token per word")
    return tokenizer


def model_config(size: str, tokenizer: PreTrainedTokenizerBase) -> RobertaConfig:
    """`base`: RobertaConfig() defaults (roberta-base: 12 layers, 768 wide, vocab 50,265) with roberta-base's
    514 positions and one token type; `small`: 4 layers, 256 wide, the vocabulary the tokenizer has, small
    enough to train on 2 CPU cores (the inference benchmark's agreement model); `tiny`:
    training.tiny_model's sizes, for the CPU smokes."""
    positions = {"max_position_embeddings": MAX_LENGTH + 2, "type_vocab_size": 1}
    if size == "base":
        # The embedding keeps 50,265 rows, so AdamW updates as many weights as roberta-base's.
        return classifier_config(tokenizer, **positions)
    if size in SMALL_SIZES:
        return classifier_config(tokenizer, vocab_size=len(tokenizer), **positions, **SMALL_SIZES[size])
    raise ValueError(f"unknown model size {size!r}; use base, {' or '.join(SMALL_SIZES)}")


def build_model(directory: Path, size: str, seed: int = 0) -> Path:
    """Saves a random-weight RoBERTa sequence classifier (3 labels) and the synthetic tokenizer to `directory`."""
    tokenizer = build_tokenizer(directory)
    torch.manual_seed(seed)
    RobertaForSequenceClassification(model_config(size, tokenizer)).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
