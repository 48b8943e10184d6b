"""`vast-launch --local`: the same launch path, on the embedded local cloud that rents out this machine.

The outputs go to a directory store under the state dir unless `outputs.url` names another. The instance's
files are on this machine too, so the last log lines and the exact stage times are also read from the
launch's own work dir `vl-<launch-id>` (found over the local cloud's HTTP control API). The embedded cloud
lives in this process: when the launch ends, every instance it ran ends with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..protocol import BOOT_LOG, Outcome, stage_times, workdir_name
from ..state_dir import default_home
from ..store import StoreSpec, local_default
from .launcher import Launcher
from .progress import LogTail
from .provider import ProviderError


def local_home() -> Path:
    """Outputs and the local cloud's state live under the state dir, never in the launched repo."""
    return default_home() / "local"


class LocalLauncher(Launcher):
    target = "local"

    def store_spec(self) -> Optional[StoreSpec]:
        return super().store_spec() or local_default(default_home())

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

    def final_log(self, launch_id: str, iid: int) -> Optional[list[str]]:
        """The work dir's log has even the lines written after the final sync."""
        vl = self._vl_dir(launch_id, iid)
        log = vl / BOOT_LOG if vl else None
        if log is None or not log.exists():
            return super().final_log(launch_id, iid)
        return log.read_bytes().decode("utf-8", errors="replace").splitlines()

    def final_outcome(self, launch_id: str, iid: int, tail: LogTail) -> Outcome:
        outcome = super().final_outcome(launch_id, iid, tail)
        vl = self._vl_dir(launch_id, iid)
        if vl is not None:
            outcome.merge(Outcome.from_workdir(vl))
        return outcome

    def after_follow(self, launch_id: str, iid: int) -> None:
        vl = self._vl_dir(launch_id, iid)
        # The instance's own stage_times file is exact; it replaces what the log showed.
        for t in stage_times(vl) if vl else []:
            self.ledger.record_stage(launch_id, t["name"], t["start"], t["end"], t["rc"])
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
