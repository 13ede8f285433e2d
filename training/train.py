"""Fine-tune a RoBERTa sentiment classifier with the PyTorch 2 recipe (bf16, fused AdamW, torch.compile).

    python -m training.train --output-dir out                       # one GPU, or CPU for development
    torchrun --nproc_per_node=8 -m training.train --output-dir out  # DDP over every GPU

--output-dir receives:
    checkpoints/checkpoint-<step>/  one per epoch (the newest and the best are kept); a restarted run
                                    resumes from the newest, so an interrupted instance does not start over
    model/                          the best model (by macro recall) and its tokenizer, for training.package
    metrics.json                    eval loss, macro recall, accuracy of that model; train runtime, samples/s
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, recall_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import is_torch_bf16_gpu_available

from training.batching import BatchPlanError, plan_batches, process_count
from training.data import LABELS, DataError, load_splits, tokenize
from training.metrics_callback import metrics_callbacks

log = logging.getLogger("training")

DEFAULT_MODEL = "cardiffnlp/twitter-roberta-base-2021-124m"
RECIPE_MAX_LENGTH = 512
# The newest checkpoint (to resume) and the best (to load at the end); older ones only cost disk and S3 sync.
KEEP_CHECKPOINTS = 2


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--model-name", default=DEFAULT_MODEL, help="hub id or local directory")
    parser.add_argument("--dataset", default="cardiffnlp/tweet_eval", help="hub dataset (ignored with files)")
    parser.add_argument("--dataset-config", default="sentiment")
    parser.add_argument("--train-file", type=Path, help="CSV / JSON lines / parquet with text,label")
    parser.add_argument("--validation-file", type=Path)
    parser.add_argument("--epochs", type=_positive_int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--global-batch-size", type=_positive_int, default=128, help="samples per optimizer step")
    parser.add_argument(
        "--max-device-batch-size",
        type=_positive_int,
        help="largest forward pass per device; above it the share is split and gradients accumulated",
    )
    parser.add_argument("--pad-to-max-length", action="store_true", help="pad every tweet to --max-length (the recipe)")
    parser.add_argument("--max-length", type=_positive_int, help=f"default: {RECIPE_MAX_LENGTH} or the model's")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="torch.compile")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    parser.add_argument("--optim", default="adamw_torch_fused", help="a TrainingArguments optim name")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=_positive_int, help="stop after this many steps (smoke runs)")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the newest checkpoint",
    )
    return parser.parse_args(argv)


def bf16_available() -> bool:
    """CPU autocast runs bf16 on any CPU; GPUs before Ampere (V100, T4) cannot, so they train in fp32."""
    return not torch.cuda.is_available() or is_torch_bf16_gpu_available()


def training_arguments(args: argparse.Namespace, world_size: int) -> TrainingArguments:
    """The recipe's TrainingArguments, with the per-device batch derived from the global batch.

    Evaluates, saves and logs once per epoch and keeps the checkpoint with the best macro recall, as the
    recipe does. Length grouping puts tweets of similar length in a batch so dynamic padding adds little;
    with --pad-to-max-length every batch is 512 wide anyway, so sampling stays random like the recipe's.
    """
    plan = plan_batches(args.global_batch_size, world_size, args.max_device_batch_size)
    bf16 = args.bf16 and bf16_available()
    if args.bf16 and not bf16:
        log.warning("this GPU cannot do bf16; training in fp32")
    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(args.output_dir / "checkpoints"),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps or -1,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=plan.per_device,
        per_device_eval_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.accumulation,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=KEEP_CHECKPOINTS,
        load_best_model_at_end=True,
        metric_for_best_model="recall",
        greater_is_better=True,
        bf16=bf16,
        optim=args.optim,
        torch_compile=args.compile,
        train_sampling_strategy="random" if args.pad_to_max_length else "group_by_length",
        ddp_find_unused_parameters=False,  # a sequence classifier uses every parameter; skip DDP's search
        use_cpu=not on_gpu,
        dataloader_pin_memory=on_gpu,
        seed=args.seed,
        report_to="none",
    )


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Macro recall (the recipe's model-selection metric: tweet_eval sentiment is imbalanced) and accuracy."""
    predicted = np.argmax(prediction.predictions, axis=-1)
    labels = prediction.label_ids
    return {
        "recall": float(recall_score(labels, predicted, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
    }


def build_trainer(args: argparse.Namespace) -> Trainer:
    """Everything but the training loop: arguments, checked and tokenized data, tokenizer, model.

    The batch split and the data are checked first, so a bad setting fails before a model is downloaded.
    Rank 0 downloads and tokenizes first; the other ranks then read the datasets cache.
    """
    training_args = training_arguments(args, process_count())
    with training_args.main_process_first(desc="load data"):
        splits = load_splits(args.dataset, args.dataset_config, args.train_file, args.validation_file)
    tokenizer = AutoTokenizer.from_pretrained(args.model_name)
    max_length = args.max_length or min(RECIPE_MAX_LENGTH, tokenizer.model_max_length)
    with training_args.main_process_first(desc="tokenize"):
        encoded = tokenize(splits, tokenizer, max_length, args.pad_to_max_length)
    set_seed(args.seed)  # the new classification head is initialised identically on every run
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model_name,
        num_labels=len(LABELS),
        problem_type="single_label_classification",  # set up front, or the first forward recompiles
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    # RoBERTa's forward takes **kwargs, so Trainer assumes its loss is a sum over num_items_in_batch and
    # multiplies it by the process count and skips the division by accumulation steps. Its loss is a mean:
    # left alone, losses and gradients grow with the number of GPUs and gradient clipping changes with it.
    model.accepts_loss_kwargs = False
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=compute_metrics,
        callbacks=metrics_callbacks(),
    )


def newest_checkpoint(checkpoints: Path) -> str | None:
    """The newest complete checkpoint, or None.

    Trainer writes trainer_state.json last, so a checkpoint cut off mid-save (a spot instance reclaimed
    while saving) lacks it; it is passed over instead of failing every restart.
    """
    complete = [
        path
        for path in checkpoints.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / "trainer_state.json").is_file()
    ]
    return str(max(complete, key=lambda path: int(path.name.removeprefix("checkpoint-")))) if complete else None


def setup_summary(trainer: Trainer, resumed_from: str | None) -> dict[str, Any]:
    """What the run actually used, after fallbacks, so benchmark results say what they measured."""
    args = trainer.args
    return {
        "processes": args.world_size,
        "per_device_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "global_batch_size": args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "bf16": args.bf16,
        "torch_compile": args.torch_compile,
        "optim": getattr(args.optim, "value", args.optim),
        "train_sampling_strategy": str(args.train_sampling_strategy),
        "device": str(args.device),
        "resumed_from": resumed_from,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO if rank == 0 else logging.WARN)
    try:
        trainer = build_trainer(args)
    except (DataError, BatchPlanError) as error:
        raise SystemExit(f"error: {error}") from None
    resumed_from = newest_checkpoint(args.output_dir / "checkpoints") if args.resume else None
    if resumed_from:
        log.info("resuming from %s", resumed_from)
    train_metrics = trainer.train(resume_from_checkpoint=resumed_from).metrics
    metrics = {**train_metrics, **trainer.evaluate(), "setup": setup_summary(trainer, resumed_from)}
    model_dir = args.output_dir / "model"
    trainer.save_model(str(model_dir))
    if trainer.is_world_process_zero():
        (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("saved model to %s: eval_recall %.4f", model_dir, metrics["eval_recall"])


if __name__ == "__main__":
    main()
