"""`vast-launch --local`: the same launch path, on the embedded local cloud that rents out this machine.

The outputs go to a directory store under the state dir unless `outputs.url` names another, and everything
after the instance is gone (its last log lines, its result, its stage times) is read from there, as on Vast.
The embedded cloud lives in this process: when the launch ends, every instance it ran ends with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..protocol import local_instance_workdir
from ..state_dir import default_home
from ..store import StoreSpec
from .launcher import Launcher
from .provider import ProviderError


def local_home() -> Path:
    """Outputs and the local cloud's state live under the state dir, never in the launched repo."""
    return default_home() / "local"


def local_workdir(row: dict) -> Optional[Path]:
    """The work dir of a local launch's instance on this machine, while it runs (its files go with it)."""
    if not row.get("instance_id"):
        return None
    return local_instance_workdir(local_home() / "cloud", int(row["instance_id"]), row["id"])


class LocalLauncher(Launcher):
    target_name = "local"
    rents_this_machine = True  # its instances clone from this machine: the git token stays here

    def store_spec(self) -> Optional[StoreSpec]:
        """Without outputs.url, a directory store under the state dir."""
        return super().store_spec() or StoreSpec((local_home() / "store").resolve().as_uri())

    def repo_url(self, report) -> str:
        return str(report.git.root)

    def after_follow(self, launch_id: str, iid: int) -> None:
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
