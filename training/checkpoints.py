"""The checkpoint a restarted run resumes from: the newest one whose files all open.

A checkpoint's presence proves little. An unclean reboot can leave trainer_state.json beside weights or
an optimizer file that were cut short, and resuming from it crashes at every boot. A missing
rng_state_<rank>.pth is worse: Trainer only logs it at info level, and that rank's length-grouped
shuffle then drifts from the others', so samples are silently repeated or skipped. So every candidate
is checked, newest first; the first complete one wins, and the log says what was passed over and why.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

log = logging.getLogger("training")

PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# What Trainer loads besides the weights and trainer_state.json when it resumes.
STATE_FILES = ("optimizer.pt", "scheduler.pt")


def rng_state_files(world_size: int) -> list[str]:
    """Trainer saves one RNG state per process, without a rank suffix when there is only one."""
    return ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{rank}.pth" for rank in range(world_size)]


def checkpoint_problem(checkpoint: Path, world_size: int) -> str | None:
    """Why a run of `world_size` processes cannot resume from `checkpoint`, or None if it can."""
    return (
        _trainer_state_problem(checkpoint)
        or _weights_problem(checkpoint)
        or _optimizer_problem(checkpoint)
        or _rng_state_problem(checkpoint, world_size)
    )


def _trainer_state_problem(checkpoint: Path) -> str | None:
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text())
    except FileNotFoundError:
        return f"no {TRAINER_STATE} (cut off while saving)"
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE} cannot be read: {error}"
    return None


def _weights_problem(checkpoint: Path) -> str | None:
    """Each safetensors file's header must read and cover the file: a cut-off file fails here."""
    names = [WEIGHTS]
    if (checkpoint / WEIGHTS_INDEX).is_file():
        try:
            names = sorted(set(json.loads((checkpoint / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as error:
            return f"{WEIGHTS_INDEX} cannot be read: {error!r}"
    for name in names:
        try:
            with safe_open(checkpoint / name, framework="pt"):
                pass
        except (OSError, SafetensorError) as error:
            return f"weights {name} do not open: {error}"
    return None


def _optimizer_problem(checkpoint: Path) -> str | None:
    """mmap reads a file's zip index, which a cut-off file lacks, without reading the tensors."""
    for name in STATE_FILES:
        try:
            torch.load(checkpoint / name, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            return f"{name} does not load: {str(error).splitlines()[0]}"
    return None


def _rng_state_problem(checkpoint: Path, world_size: int) -> str | None:
    missing = [name for name in rng_state_files(world_size) if not (checkpoint / name).is_file()]
    if missing:
        return f"no {', '.join(missing)} (cut off while saving, or saved by a run with other processes)"
    return None


def numbered_checkpoints(checkpoints: Path) -> list[Path]:
    """checkpoint-<step> folders, newest (highest step) first."""
    found = [path for path in checkpoints.glob(f"{PREFIX}*") if path.name.removeprefix(PREFIX).isdigit()]
    return sorted(found, key=lambda path: int(path.name.removeprefix(PREFIX)), reverse=True)


def resumable_checkpoint(checkpoints: Path, world_size: int) -> str | None:
    """The newest checkpoint a run of `world_size` processes can resume from, or None to start over."""
    candidates = numbered_checkpoints(checkpoints)
    for checkpoint in candidates:
        problem = checkpoint_problem(checkpoint, world_size)
        if problem is None:
            log.info("resuming from %s", checkpoint)
            return str(checkpoint)
        log.warning("not resuming from %s: %s", checkpoint.name, problem)
    if candidates:
        log.warning("no checkpoint in %s is complete: starting over", checkpoints)
    return None
