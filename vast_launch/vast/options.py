"""What a launch is asked to do (`LaunchOptions`, from the command line) and what it returns (`LaunchResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    runs_dir: Optional[Path] = None
    # On Ctrl-C while following: True to destroy now, False to detach (None: no terminal, destroy).
    ask_destroy: Optional[Callable[[], bool]] = None
    # After the instance reported its result, how long it may take to destroy itself before the launcher does.
    teardown_grace: float = 120.0
    # While following: a progress line when the instance has printed nothing for this long (0: never).
    heartbeat_seconds: float = 30.0


@dataclass
class LaunchResult:
    launch_id: str
    instance_id: Optional[int] = None
    state: str = "planned"
    end_reason: Optional[str] = None
    run_dir: Optional[Path] = None
    dry_run: Optional[dict] = None
    exit_code: int = 0
