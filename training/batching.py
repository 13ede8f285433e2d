"""How the global batch is split over processes, so one optimizer step sees the same samples on 1 GPU or 8.

The recipe fixes 16 samples per GPU on 8 GPUs, i.e. 128 per optimizer step. Here the global batch is
the setting and the per-device batch is derived from it, so the learning dynamics (and so the accuracy)
do not change with the instance type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


class BatchPlanError(ValueError):
    """The global batch cannot be split evenly; raised before anything is loaded."""


@dataclass(frozen=True)
class BatchPlan:
    per_device: int
    accumulation: int
    processes: int

    @property
    def global_batch(self) -> int:
        return self.per_device * self.accumulation * self.processes


def plan_batches(global_batch: int, processes: int, max_per_device: int | None = None) -> BatchPlan:
    """Splits `global_batch` so that per_device * accumulation * processes == global_batch exactly.

    Each process takes global_batch / processes samples per optimizer step. Where that share does not
    fit in one forward pass (more than `max_per_device`), it is split into the fewest equal micro-batches
    of at most `max_per_device` and their gradients are accumulated. A global batch that is not a
    multiple of the process count has no exact split (accumulation multiplies, it cannot divide), so it
    is refused rather than silently changing the optimisation.
    """
    if global_batch < 1 or processes < 1:
        raise BatchPlanError(f"global batch ({global_batch}) and processes ({processes}) must be positive")
    if global_batch % processes:
        raise BatchPlanError(
            f"global batch {global_batch} does not split evenly over {processes} processes; "
            f"use a multiple of {processes}"
        )
    share = global_batch // processes
    limit = max_per_device or share
    accumulation = next(steps for steps in range(1, share + 1) if share % steps == 0 and share // steps <= limit)
    return BatchPlan(per_device=share // accumulation, accumulation=accumulation, processes=processes)


def process_count() -> int:
    """Replicas that share one optimizer step: torchrun's WORLD_SIZE, else every visible GPU.

    Without torchrun, Trainer wraps the model in DataParallel over all visible GPUs and multiplies the
    per-device batch by their number, so they count as replicas too.
    """
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    return max(1, torch.cuda.device_count())
