"""Runs a script's steps with one terminal line each, and everything the step prints in its own log file.

Output is moved at the file-descriptor level, so progress bars of libraries, C extensions and child
processes land in the log as well; the terminal keeps the step's name and time, or, when the step
fails, its name and the path of its log (which ends with the traceback).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NAME_WIDTH = 46


class StepError(Exception):
    def __init__(self, title: str, log: Path) -> None:
        super().__init__(f"step '{title}' failed; its log: {log}")
        self.title = title
        self.log = log


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr, and its children's, go to `path` until the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in enumerate(saved, start=1):
            os.dup2(original, fd)
            os.close(original)


class Steps:
    """`with steps.run(title, log_name): ...` times a step and keeps its output in `<logs>/<log_name>.log`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started = time.monotonic()
        logs.mkdir(parents=True, exist_ok=True)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @contextmanager
    def run(self, title: str, log_name: str) -> Iterator[Path]:
        log = self.log(log_name)
        began = time.monotonic()
        try:
            with output_to(log):
                try:
                    yield log
                except BaseException:
                    traceback.print_exc()
                    raise
        except BaseException as error:
            print(f"  {title:<{NAME_WIDTH}} failed after {time.monotonic() - began:.1f} s", flush=True)
            raise StepError(title, log) from error
        print(f"  {title:<{NAME_WIDTH}} {time.monotonic() - began:6.1f} s", flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
