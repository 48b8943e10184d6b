"""`vast-launch --local`: the same launch path, on the embedded local cloud that rents out this machine.

The instance's files are on this machine, so the outcome, stage times and outputs are read from the
launch's own work dir `vl-<launch-id>` (found over the local cloud's HTTP control API), exactly.
The embedded cloud lives in this process: when the launch ends, every instance it ran ends with it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from ..protocol import BOOT_LOG, STAGE_TIMES_FILE, Outcome, workdir_name
from ..state_dir import default_home
from .launcher import Launcher
from .progress import LogTail
from .provider import ProviderError


def local_home() -> Path:
    """Outputs and the local cloud's state live under the state dir, never in the launched repo."""
    return default_home() / "local"


def local_runs_dir() -> Path:
    return local_home() / "runs"


class LocalLauncher(Launcher):
    target = "local"

    def repo_url(self, report) -> str:
        return str(report.git.root)

    def _vl_dir(self, launch_id: str, iid: int) -> Optional[Path]:
        try:
            rows = self.provider.local_control("GET", "/_local/instances")["instances"]
        except (ProviderError, OSError, KeyError):
            return None
        for row in rows:
            if int(row["id"]) == iid:
                path = Path(row["workdir"]) / workdir_name(launch_id)
                return path if path.is_dir() else None
        return None

    def final_outcome(self, launch_id: str, iid: int, tail: LogTail) -> Outcome:
        """The last lines (teardown) are written after the final poll; here they can still be read."""
        vl = self._vl_dir(launch_id, iid)
        outcome = Outcome()
        if vl is None:
            return outcome
        log = vl / BOOT_LOG
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            tail.absorb(lines, events=lambda: lines)
            for line in tail.take():
                self._handle_line(launch_id, line, outcome)
        outcome.merge(Outcome.from_workdir(vl))
        return outcome

    def after_follow(self, launch_id: str, iid: int) -> None:
        vl = self._vl_dir(launch_id, iid)
        times = vl / STAGE_TIMES_FILE if vl else None
        if times is not None and times.exists():
            # The instance's own stage_times file is exact; it replaces what the log showed.
            for line in times.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    self.ledger.record_stage(launch_id, parts[0], float(parts[1]), float(parts[2]), int(parts[3]))
        self._reconcile_bill(launch_id)

    def _reconcile_bill(self, launch_id: str) -> None:
        """The local cloud bills at once and disappears with this process: freeze its bill now."""
        from ..reports.cost import reconcile

        try:
            billed = reconcile(self.ledger, [launch_id], self.provider.invoices, settled=lambda r: True)
        except (ProviderError, TimeoutError) as exc:
            self.echo(f"WARNING: could not read the bill: {exc}")
            return
        row = self.ledger.get(launch_id)
        if launch_id in billed:
            self.say("cost", f"estimate ${row['cost_usd']:.4f}, billed ${billed[launch_id]:.4f}")

    def keep_outputs(self, launch_id: str, iid: int) -> Optional[Path]:
        src = self._vl_dir(launch_id, iid)
        if src is None or self.opts.runs_dir is None:
            return None
        dest = Path(self.opts.runs_dir) / launch_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, symlinks=True, ignore=_checkout_and_special_files, dirs_exist_ok=True)
        return dest


def _checkout_and_special_files(folder: str, names: list[str]) -> list[str]:
    """Not kept: the commit's checkout (it is in git) and fifos or sockets (the teardown's fifo)."""
    return [n for n in names if n == "repo" or not (os.path.isfile(os.path.join(folder, n)) or os.path.isdir(os.path.join(folder, n)))]
