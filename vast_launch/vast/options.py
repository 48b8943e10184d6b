"""What a Vast launch is asked to do (`LaunchOptions`, from the command line) and what one instance runs (`Attempt`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class LaunchOptions:
    auto_shutdown: Optional[bool] = None  # None: lifecycle.auto_shutdown
    dry_run: bool = False
    follow: Optional[bool] = None  # None: follow in local mode, detach otherwise
    profile: Optional[str] = None
    allow_dirty: bool = False
    wandb_mode: Optional[str] = None
    max_offers: int = 3
    poll_seconds: float = 1.0
    extra_env: dict = field(default_factory=dict)  # e.g. test knobs; never secrets
    # Asked once the offer is chosen, before anything is rented: the question, showing offer, $/h, deadline.
    confirm: Optional[Callable[[str], bool]] = None
    # On Ctrl-C while following: True to destroy now, False to detach (None: no terminal, destroy).
    ask_destroy: Optional[Callable[[], bool]] = None
    # After the instance reported its result, how long it may take to destroy itself before the launcher does.
    teardown_grace: float = 120.0
    # While following: a progress line when the instance has printed nothing for this long (0: never).
    heartbeat_seconds: float = 30.0


@dataclass(frozen=True)
class Attempt:
    """What one instance of a launch runs: a launch's first, or its next after a resume or a recovery."""

    launch_id: str
    commit: str
    repo: str
    config_rel: str  # the config's path in the commit ($VL_CONFIG)
    group: str
    attempt: int = 1
    spent_usd: float = 0.0  # what the launch's earlier attempts cost: max_cost_usd covers them all
