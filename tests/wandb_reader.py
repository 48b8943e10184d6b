"""Read offline `.wandb` files back in tests (the reader itself lives in vast_launch.reports.wandb_files)."""

from __future__ import annotations

import time
from pathlib import Path

from vast_launch.reports.wandb_files import OfflineRun, find_runs, iter_records, read_run  # noqa: F401


def read_finished_run(path: str | Path, timeout: float = 30.0) -> OfflineRun:
    """wandb-core may still be flushing after `finish()` returns: wait for the exit record."""
    deadline = time.time() + timeout
    while True:
        run = read_run(path)
        if run.finished or time.time() > deadline:
            return run
        time.sleep(0.1)
