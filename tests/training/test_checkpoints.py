"""Which checkpoint a restart resumes from, on copies of a real run's checkpoints broken as a reboot breaks them."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from training.checkpoints import resumable_checkpoint, rng_state_files


@pytest.fixture
def checkpoints(trained: Path, tmp_path: Path) -> Path:
    """A copy of the shared run's checkpoint-15 and checkpoint-30, free to be broken."""
    return Path(shutil.copytree(trained / "checkpoints", tmp_path / "checkpoints"))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def as_two_processes(checkpoints: Path) -> None:
    """What two ranks save instead of the one rng_state.pth of a single process."""
    for checkpoint in checkpoints.glob("checkpoint-*"):
        for name in rng_state_files(2):
            shutil.copy(checkpoint / "rng_state.pth", checkpoint / name)
        (checkpoint / "rng_state.pth").unlink()


def test_the_newest_complete_checkpoint_wins(checkpoints: Path) -> None:
    (checkpoints / "checkpoint-notes").mkdir()  # not a step: ignored
    assert resumable_checkpoint(checkpoints, world_size=1) == str(checkpoints / "checkpoint-30")


@pytest.mark.parametrize(
    ("breakage", "world_size", "reason"),
    [
        (lambda newest: cut_short(newest / "model.safetensors"), 1, "weights model.safetensors do not open"),
        (lambda newest: (newest / "rng_state_1.pth").unlink(), 2, "no rng_state_1.pth"),
        (lambda newest: (newest / "optimizer.pt").write_bytes(b"\0" * 4096), 1, "optimizer.pt does not load"),
        (lambda newest: cut_short(newest / "optimizer.pt"), 1, "optimizer.pt does not load"),
        (lambda newest: (newest / "scheduler.pt").unlink(), 1, "scheduler.pt does not load"),
        (lambda newest: (newest / "trainer_state.json").unlink(), 1, "no trainer_state.json (cut off while saving)"),
        (
            lambda newest: (newest / "trainer_state.json").write_text('{"epoch": 2'),
            1,
            "trainer_state.json cannot be read",
        ),
    ],
    ids=[
        "cut-weights",
        "missing-rank-rng",
        "zeroed-optimizer",
        "cut-optimizer",
        "no-scheduler",
        "no-state",
        "bad-state",
    ],
)
def test_a_broken_newest_checkpoint_falls_back_to_the_previous_one_and_says_why(
    checkpoints: Path,
    caplog: pytest.LogCaptureFixture,
    breakage: Callable[[Path], object],
    world_size: int,
    reason: str,
) -> None:
    if world_size == 2:
        as_two_processes(checkpoints)
    breakage(checkpoints / "checkpoint-30")
    with caplog.at_level(logging.INFO, logger="training"):
        chosen = resumable_checkpoint(checkpoints, world_size)
    assert chosen == str(checkpoints / "checkpoint-15")
    assert f"not resuming from checkpoint-30: {reason}" in caplog.text
    assert f"resuming from {checkpoints / 'checkpoint-15'}" in caplog.text


def test_rng_states_of_another_process_count_do_not_resume(checkpoints: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Saved by one process, resumed by two: rank 1 would shuffle on its own; starting over is honest."""
    with caplog.at_level(logging.WARNING, logger="training"):
        assert resumable_checkpoint(checkpoints, world_size=2) is None
    assert "no rng_state_0.pth, rng_state_1.pth" in caplog.text
    assert f"no checkpoint in {checkpoints} is complete: starting over" in caplog.text


def test_nothing_usable_starts_over_and_says_so(checkpoints: Path, caplog: pytest.LogCaptureFixture) -> None:
    for checkpoint in checkpoints.glob("checkpoint-*"):
        cut_short(checkpoint / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="training"):
        assert resumable_checkpoint(checkpoints, world_size=1) is None
    assert caplog.text.count("weights model.safetensors do not open") == 2
    assert "starting over" in caplog.text


def test_no_checkpoints_start_over_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="training"):
        assert resumable_checkpoint(tmp_path / "missing", world_size=1) is None
    assert caplog.text == ""
