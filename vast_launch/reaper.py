"""Layer 3 of teardown: find our instances that should not exist any more, and destroy them.

Ours = label `vast-launch:<launch-id>`. Reaped: past the deadline (+ grace), stuck in
loading/exited/unknown/offline longer than the limits, or labeled by us but unknown to the ledger.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

from .launch import LABEL_PREFIX
from .ledger import Ledger
from .provider import Provider

STUCK_STATES = {"exited", "unknown", "offline"}
LOADING_STATES = {None, "created", "loading"}


@dataclass
class Verdict:
    instance_id: int
    launch_id: Optional[str]
    status: Optional[str]
    dph_total: float
    reason: str
    destroyed: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _first_seen(ledger: Ledger, launch_id: Optional[str], status: Optional[str], fallback: float) -> float:
    if launch_id:
        times = [e["t"] for e in ledger.events(launch_id) if e["state"] == status]
        if times:
            return times[0]
    return fallback


def plan(provider: Provider, ledger: Ledger, grace_minutes: float = 10, loading_minutes: float = 30,
         stuck_minutes: float = 10, now: Optional[float] = None) -> list[Verdict]:
    now = time.time() if now is None else now
    verdicts = []
    for row in provider.list(label_prefix=LABEL_PREFIX):
        launch_id = (row.get("label") or "")[len(LABEL_PREFIX):] or None
        launch = ledger.get(launch_id) if launch_id else None
        status = row.get("actual_status")
        started = float(row.get("start_date") or now)
        reason = None
        if launch is None:
            reason = "labeled by vast-launch but unknown to this ledger"
        elif launch.get("deadline") and now > launch["deadline"] + grace_minutes * 60:
            reason = f"past its deadline by {(now - launch['deadline']) / 60:.1f} min"
        elif status in LOADING_STATES and now - _first_seen(ledger, launch_id, "loading", started) > loading_minutes * 60:
            reason = f"stuck in {status or 'provisioning'} for more than {loading_minutes:g} min"
        elif status in STUCK_STATES and now - _first_seen(ledger, launch_id, status, started) > stuck_minutes * 60:
            reason = f"{status} for more than {stuck_minutes:g} min (it never runs again)"
        if reason:
            verdicts.append(Verdict(int(row["id"]), launch_id, status, float(row.get("dph_total") or 0), reason))
    return verdicts


def reap(provider: Provider, ledger: Ledger, verdicts: list[Verdict]) -> list[Verdict]:
    for v in verdicts:
        if v.launch_id and ledger.get(v.launch_id):
            ledger.event(v.launch_id, "destroying", f"reaper: {v.reason}", set_state=False)
        provider.destroy(v.instance_id)
        v.destroyed = True
        if v.launch_id and ledger.get(v.launch_id):
            ledger.finish(v.launch_id, "destroyed", f"reaped: {v.reason}")
    return verdicts
