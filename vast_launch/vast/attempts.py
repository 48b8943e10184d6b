"""A recoverable launch's attempts and budget (lifecycle.recover), from its ledger row: what the follower, the
supervisor (`watch`) and settling decide by. Imports nothing of the launch path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..billing import estimate
from ..ledger import Ledger
from ..states import TERMINAL

AWAITING = "waiting for recovery (`vast-launch watch`, or `vast-launch reap --recover`)"


@dataclass(frozen=True)
class Settings:
    """A launch's lifecycle.recover and budget, as its ledger row keeps them (the config may have changed since)."""

    max_attempts: int
    stopped_minutes: float
    max_cost_usd: Optional[float]
    loading_minutes: float

    @classmethod
    def of(cls, row: dict) -> Optional["Settings"]:
        extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
        if not extra.get("max_attempts") or not extra.get("store"):
            return None
        return cls(
            int(extra["max_attempts"]),
            float(extra.get("recover_stopped_minutes") or 0.0),
            float(extra["max_cost_usd"]) if extra.get("max_cost_usd") is not None else None,
            float(extra.get("loading_timeout_minutes") or 20.0),
        )


def attempt_of(row: dict) -> int:
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    return int(extra.get("attempt") or 1)


def attempts_used(row: dict, events: list[dict]) -> int:
    """Attempts that rented an instance: the current one counts only once something was created for it (a
    supervisor that ended between reopening the launch and creating did not use one)."""
    attempt, rented = attempt_of(row), False
    for ev in events:
        if ev["state"] == "resuming":
            rented = False
        elif ev["state"] == "created":
            rented = True
    return attempt if rented or attempt == 1 else attempt - 1


def stop_reason(row: dict, events: list[dict], max_attempts: int, max_cost_usd: Optional[float]) -> Optional[str]:
    """Why the launch may not use another instance (attempts or budget spent), or None."""
    attempt = attempts_used(row, events)
    if attempt >= max_attempts:
        return f"recovery stopped: {attempt} of {max_attempts} attempts used"
    spent = estimate(row, events)["cost_usd"]
    if max_cost_usd is not None and spent >= max_cost_usd:
        return f"recovery stopped: the budget (max_cost_usd ${max_cost_usd:g}) is spent (${spent:.4f})"
    return None


def awaits_recovery(ledger: Ledger, row: dict) -> bool:
    """Its instance is gone without a result and it may use another (settling leaves it open, in state `gone`)."""
    settings = Settings.of(row)
    if settings is None or row.get("target") != "vast" or row["state"] in TERMINAL:
        return False
    return stop_reason(row, ledger.events(row["id"]), settings.max_attempts, settings.max_cost_usd) is None
