"""What every target offers the commands, and the typed instances and offers they exchange.

A target is where a launch runs: Vast, the embedded local cloud, a SLURM cluster. Each backend package
supplies one `Target` (registered in `targets/__init__.py`); the commands ask the registry for it and call
the operations below, and never test a target's name. An operation a target cannot do raises UserError
with one line saying so (the defaults here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import LaunchConfig
    from ..ledger import Ledger

Echo = Callable[[str], None]


@dataclass
class Instance:
    """An instance as any cloud shows it; `status` is one of states.INSTANCE_STATUSES."""

    id: int
    status: str
    label: str = ""
    dph_total: float = 0.0
    gpu_name: Optional[str] = None
    started_at: Optional[float] = None
    ssh: Optional[tuple[str, int]] = None  # (host, port) of its SSH server
    env: dict = field(default_factory=dict)  # the environment it was created with (no secret is shown)
    raw: dict = field(default_factory=dict)  # the cloud's own row, for display


@dataclass
class Offer:
    """A rentable machine as any cloud offers it; `raw` keeps every field the cloud sent."""

    id: int
    gpu_name: Optional[str]
    num_gpus: int
    dph_total: float
    reliability: float = 0.0
    raw: dict = field(default_factory=dict)


@dataclass
class LaunchRequest:
    """What the command line asks of a launch, whatever the target."""

    auto_shutdown: Optional[bool] = None
    dry_run: bool = False
    follow: Optional[bool] = None
    profile: Optional[str] = None
    allow_dirty: bool = False
    wandb_mode: Optional[str] = None
    extra_env: dict = field(default_factory=dict)
    poll_seconds: float = 1.0
    heartbeat_seconds: float = 30.0
    resume: Optional[dict] = None  # the ledger row of the launch to resume
    confirm: Optional[Callable[[str], bool]] = None  # asked once the offer is chosen (None: do not ask)
    ask_destroy: Optional[Callable[[], bool]] = None  # after Ctrl-C while following (None: destroy)
    options: dict = field(default_factory=dict)  # the target's own command-line options


@dataclass
class LaunchResult:
    """What a launch ended as: the CLI prints it and exits with `exit_code`."""

    launch_id: str
    instance_id: Optional[int] = None
    state: str = "planned"
    end_reason: Optional[str] = None
    outputs: Optional[str] = None  # where the outputs are: a folder (a directory store) or the store's URL
    dry_run: Optional[dict] = None
    exit_code: int = 0


class Target:
    """The operations a command may ask of a target."""

    name = ""  # as the ledger's `target` column records it
    instances_are = "its instances"  # in messages: "... which <this> cannot reach"
    flag: Optional[str] = None  # a launch flag that chooses this target (`--local`)
    default_wandb_mode: Optional[str] = None  # None: the config's wandb.mode
    disks_go_with_instances = False  # an instance's files go when it is destroyed: warn about what stays there
    follows_by_default = False
    asks_before_renting = True  # `--yes` skips the question; a target that rents nothing never asks
    runs_stages_itself = False  # a scheduler runs the stages (stages_now), not an instance that reports them
    retry_notice: Optional[Callable[[str], None]] = None  # set by the CLI: how a provider's retry shows

    # --- before anything is rented ----------------------------------------------------------------
    def check(self, cfg: LaunchConfig, report, dry_run: bool = False) -> None:
        """Add this target's own failures and warnings (credentials, reachability) to the report
        (a checks.CheckReport: `failures`, `warnings`, `repo_url`)."""

    def reaches_this_machine(self, provider_url: Optional[str] = None) -> bool:
        """Can its instances read this machine's paths (a file:// store, a local git remote)?"""
        return True

    def launch(self, cfg: LaunchConfig, ledger: Ledger, request: LaunchRequest, echo: Echo):
        raise UserError(f"target {self.name} cannot launch")

    def offers(self, cfg: LaunchConfig, limit: int) -> tuple[str, list]:
        """(the query in words, the ranked offers: `.rank`, `.reason`, `.offer` the cloud's own fields)."""
        raise UserError(f"target {self.name} has no offers to rank")

    # --- a launch's life --------------------------------------------------------------------------
    def settle(self, ledger: Ledger, rows: list[dict]) -> list[str]:
        """Bring rows whose launcher died up to date; returns a note for each row it could not settle."""
        return []

    def stages_now(self, ledger: Ledger, row: dict) -> Optional[list]:
        """For a launch a scheduler runs: its stages as the scheduler sees them now (None: the ledger's)."""
        return None

    def logs(self, ledger: Ledger, row: dict, tail: int, follow: bool, via: str, identity: Optional[str], echo: Echo) -> None:
        raise UserError(f"{row['id']} ran on target {self.name}, which keeps no log to show")

    def ssh(self, row: dict, command: list[str], identity: Optional[str]) -> int:
        raise UserError(f"{row['id']} ran on target {self.name}: no instance to SSH into (`vast-launch logs {row['id']}`)")

    def down(self, ledger: Ledger, row: dict, yes: bool, echo: Echo) -> str:
        raise UserError(f"target {self.name} cannot end {row['id']}")

    def reap(
        self,
        ledger: Ledger,
        grace,
        loading,
        stuck,
        all_workspaces: bool,
        go_ahead: Callable[[list], bool],
        recover: Optional[Echo] = None,
    ):
        """(reaped, left alone): this workspace's instances that outlived their launch; `go_ahead(found)`
        says whether to destroy them (it may ask). Each verdict has instance_id, launch_id, status,
        dph_total, reason, destroyed, error, unconfirmed and as_dict(). `recover`: first recover the launches
        that may go on elsewhere (`supervisor`), saying what was done through it."""
        raise UserError(f"target {self.name} keeps no instances to reap")

    def supervisor(self, ledger: Ledger, echo: Echo):
        """What recovers this target's launches nobody follows (`watch`, `reap --recover`); None: nothing does."""
        return None

    def outputs_dir(self, row: dict) -> Optional[Path]:
        """Where the launch's outputs are on this machine, when they are not in an outputs store."""
        return None

    def reconcile(self, ledger: Ledger, since: Optional[float], until: Optional[float]) -> tuple[dict, list[str]]:
        """Billed amounts of its launches whose bill is not frozen yet ({launch id: $}), and notes."""
        return {}, []
