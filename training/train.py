"""Fine-tune a RoBERTa sentiment classifier with the PyTorch 2 recipe (bf16, fused AdamW, torch.compile).

    python -m training.train --output-dir out                       # one GPU, or CPU for development
    torchrun --standalone --nproc_per_node=8 -m training.train --output-dir out  # DDP over every GPU

--output-dir receives:
    checkpoints/checkpoint-<step>/  one per epoch (the newest and the best are kept); a restarted run
                                    resumes from the newest complete one, so an interrupted instance does
                                    not start over
    checkpoints/hub-revisions.json  the hub commits this run reads, so a restart reads the same ones
    model/                          the best model (by validation macro recall) and its tokenizer
    metrics.json                    eval_* (validation: it picked that model) and test_* (the held-out
                                    split, scored once after the choice) loss, macro recall, accuracy;
                                    train runtime, samples/s; `setup`: what the run used, hub commits included
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from datasets import Dataset
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

from training.arguments import CUDA_GRAPH_MODES, RECIPE_MAX_LENGTH, parse_args
from training.batching import BatchPlan, BatchPlanError, plan_batches, process_count
from training.checkpoints import resumable_checkpoint
from training.data import HELD_OUT, DataError, load_splits, tokenize, uses_files
from training.metrics_callback import metrics_callbacks
from training.revisions import RECORD_NAME, RepoType, RevisionError, RevisionPins, default_revision, is_local

log = logging.getLogger("training")

# The newest checkpoint (to resume) and the best (to load at the end); older ones only cost disk and S3 sync.
KEEP_CHECKPOINTS = 2


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
    check_compile_mode(args, plan)
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
        **compile_options(args),
        train_sampling_strategy="random" if args.pad_to_max_length else "group_by_length",
        ddp_find_unused_parameters=False,  # a sequence classifier uses every parameter; skip DDP's search
        use_cpu=not on_gpu,
        dataloader_pin_memory=on_gpu,
        dataloader_num_workers=args.dataloader_workers,
        dataloader_persistent_workers=args.dataloader_workers > 0,  # forked once, not again every epoch
        # --run-ahead: the two places where Trainer waits for the GPU every step, neither part of the optimisation
        accelerator_config={"non_blocking": args.run_ahead and on_gpu},
        logging_nan_inf_filter=not args.run_ahead,
        seed=args.seed,
        report_to="none",
    )


def compile_options(args: argparse.Namespace) -> dict[str, Any]:
    """TrainingArguments' torch.compile fields: inductor in the mode given, or the cudagraphs backend."""
    if not args.compile:
        return {"torch_compile": False}
    if args.compile_mode == "cudagraphs":
        return {"torch_compile": True, "torch_compile_backend": "cudagraphs"}
    return {"torch_compile": True, "torch_compile_mode": None if args.compile_mode == "default" else args.compile_mode}


def check_compile_mode(args: argparse.Namespace, plan: BatchPlan) -> None:
    """CUDA graphs replay into fixed memory: the gradients one micro-batch leaves in .grad are overwritten by
    the next replay, so accumulating them fails mid-run (torch's cudagraph trees name this case in their
    error). Refused before anything loads, on CPU too, so a local run finds it first."""
    if args.compile and args.compile_mode in CUDA_GRAPH_MODES and plan.accumulation > 1:
        raise BatchPlanError(
            f"--compile-mode {args.compile_mode} replays CUDA graphs, which cannot accumulate gradients, and the "
            f"global batch {args.global_batch_size} takes {plan.accumulation} micro-batches per process here; "
            "raise --max-device-batch-size or use --compile-mode default"
        )


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Macro recall (the recipe's model-selection metric: tweet_eval sentiment is imbalanced) and accuracy."""
    predicted = np.argmax(prediction.predictions, axis=-1)
    labels = prediction.label_ids
    return {
        "recall": float(recall_score(labels, predicted, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predicted)),
    }


T = TypeVar("T")


def on_main_process(training_args: TrainingArguments, work: Callable[[], T]) -> T:
    """`work`'s result on the main process, handed to every rank, so that all ranks act on one answer."""
    answer = [work() if training_args.process_index == 0 else None]
    return broadcast_object_list(answer)[0]


@dataclass(frozen=True)
class TrainingJob:
    """A ready Trainer, the held-out test split (None without one) and the inputs it read."""

    trainer: Trainer
    test_dataset: Dataset | None
    inputs: dict[str, str | None]


def build_job(args: argparse.Namespace) -> TrainingJob:
    """Everything but the training loop: arguments, hub commits, checked and tokenized data, tokenizer, model.

    The batch split and the data are checked first, so a bad setting fails before a model is downloaded.
    Rank 0 downloads first; the other ranks then read the caches, at the commits rank 0 resolved.
    """
    training_args = training_arguments(args, process_count())
    pins = RevisionPins(args.output_dir / "checkpoints" / RECORD_NAME, reuse=args.resume)

    def commit(repo_type: RepoType, name: str, revision: str | None) -> str | None:
        if is_local(name):
            return None
        return on_main_process(training_args, lambda: pins.commit(repo_type, name, revision or default_revision(name)))

    files = uses_files(args.train_file, args.validation_file, args.test_file)
    dataset_revision = None if files else commit("dataset", args.dataset, args.dataset_revision)
    with training_args.main_process_first(desc="load data"):
        splits = load_splits(
            args.dataset,
            args.dataset_config,
            args.train_file,
            args.validation_file,
            args.test_file,
            dataset_revision,
            args.labels,
        )
    model_revision = commit("model", args.model_name, args.model_revision)
    with training_args.main_process_first(desc="load tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(args.model_name, revision=model_revision)
    max_length = args.max_length or min(RECIPE_MAX_LENGTH, tokenizer.model_max_length)
    with training_args.main_process_first(desc="tokenize"):
        encoded = tokenize(splits, tokenizer, max_length, args.pad_to_max_length)
    set_seed(args.seed)  # the new classification head is initialised identically on every run
    with training_args.main_process_first(desc="load model"):
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model_name,
            revision=model_revision,
            problem_type="single_label_classification",  # set up front, or the first forward recompiles
            # The endpoint answers with these names; num_labels follows from them (passing it as well
            # warns when the model was trained on a different number of classes).
            id2label=dict(enumerate(args.labels)),
            label2id={label: index for index, label in enumerate(args.labels)},
            # A classifier trained on other classes gets a new head of the right size, as a base model does.
            ignore_mismatched_sizes=True,
        )
    # RoBERTa's forward takes **kwargs, so Trainer assumes its loss is a sum over num_items_in_batch and
    # multiplies it by the process count and skips the division by accumulation steps. Its loss is a mean:
    # left alone, losses and gradients grow with the number of GPUs and gradient clipping changes with it.
    model.accepts_loss_kwargs = False
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of),
        compute_metrics=compute_metrics,
        callbacks=metrics_callbacks(),
    )
    inputs = {
        "model": args.model_name,
        "model_revision": model_revision,
        "dataset": "files" if files else f"{args.dataset} ({args.dataset_config})",
        "dataset_revision": dataset_revision,
    }
    return TrainingJob(trainer, encoded.get(HELD_OUT), inputs)


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
        "torch_compile_backend": args.torch_compile_backend if args.torch_compile else None,
        "torch_compile_mode": (args.torch_compile_mode or "default") if args.torch_compile else None,
        "pad_to_multiple_of": getattr(trainer.data_collator, "pad_to_multiple_of", None),
        "dataloader_workers": args.dataloader_num_workers,
        "run_ahead": not args.logging_nan_inf_filter,
        "optim": getattr(args.optim, "value", args.optim),
        "train_sampling_strategy": str(args.train_sampling_strategy),
        "device": str(args.device),
        "resumed_from": resumed_from,
    }


def main(argv: list[str] | None = None) -> Trainer:
    """Trains, evaluates and saves; returns the trainer, whose process group the caller must outlive."""
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO if rank == 0 else logging.WARN)
    try:
        job = build_job(args)
    except (DataError, BatchPlanError, RevisionError) as error:
        raise SystemExit(f"error: {error}") from None
    trainer = job.trainer
    checkpoints = args.output_dir / "checkpoints"
    resumed_from = (
        on_main_process(trainer.args, lambda: resumable_checkpoint(checkpoints, trainer.args.world_size))
        if args.resume
        else None
    )
    scores = {**trainer.train(resume_from_checkpoint=resumed_from).metrics, **trainer.evaluate()}
    if job.test_dataset is not None:  # once, on the model validation chose: the test split had no say in it
        scores.update(trainer.evaluate(job.test_dataset, metric_key_prefix="test"))
    model_dir = args.output_dir / "model"
    trainer.save_model(str(model_dir))
    if trainer.is_world_process_zero():
        metrics = {**scores, "setup": {**setup_summary(trainer, resumed_from), **job.inputs}}
        (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        recalls = ", ".join(f"{key} {scores[key]:.4f}" for key in ("eval_recall", "test_recall") if key in scores)
        log.info("saved model to %s: %s", model_dir, recalls)
    # Every rank leaves the process group itself: one left to the interpreter's teardown can abort the
    # process after the model is saved ("terminate called without an active exception"), failing the run.
    trainer.accelerator.end_training()
    return trainer


def exit_without_teardown() -> None:
    """Ends a distributed rank once its results are on disk, before Python frees the DDP model.

    Freeing it frees gloo's process group, which holds the GIL while it waits for gloo's worker threads,
    and a worker still releasing a finished collective waits for the GIL: the rank hangs until torchrun's
    exit barrier times out and the node's job fails (py-spy, under CPU load: ~ProcessGroupGloo in
    pthread_mutex_lock, the worker in gil_scoped_acquire; 7 of 24 two-node runs).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    finished = main()  # held: the process group must not be freed before the exit
    if finished.args.world_size > 1:
        exit_without_teardown()
