"""What a Vast launch is asked to do (`LaunchOptions`, from the command line) and what one instance runs (`Attempt`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..targets.base import LaunchRequest


@dataclass
class LaunchOptions(LaunchRequest):
    """The command line's request, and what only the Vast launcher tunes (tests set these)."""

    max_offers: int = 3
    # After the instance reported its result, how long it may take to destroy itself before the launcher does.
    teardown_grace: float = 120.0

    @classmethod
    def of(cls, request: LaunchRequest) -> "LaunchOptions":
        return cls(**{f.name: getattr(request, f.name) for f in fields(LaunchRequest)})


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
