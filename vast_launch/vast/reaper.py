"""Layer 3 of teardown: find our instances that should not exist any more, and destroy them.

Ours = label `vast-launch:<launch-id>`. Reaped: past the deadline (+ the launch's
lifecycle.reap_grace_minutes), stuck in loading/exited/unknown/offline longer than the limits,
labeled by us but unknown to the ledger, or still there although the ledger says its launch ended.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

from ..ledger import Ledger
from ..protocol import LABEL_PREFIX, launch_id_of
from ..states import LOADING, STOPPED_WITHOUT_TEARDOWN, TERMINAL
from .provider import Provider, ProviderError
from .teardown import destroy_and_record

DEFAULT_GRACE_MINUTES = 10.0
DEFAULT_LOADING_MINUTES = 30.0


@dataclass
class Verdict:
    instance_id: int
    launch_id: Optional[str]
    status: Optional[str]
    dph_total: float
    reason: str
    destroyed: bool = False
    error: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)


def _first_seen(ledger: Ledger, launch_id: Optional[str], status: Optional[str], fallback: float) -> float:
    if launch_id:
        times = [e["t"] for e in ledger.events(launch_id) if e["state"] == status]
        if times:
            return times[0]
    return fallback


def _launch_setting(launch: dict, key: str, given: Optional[float], default: float) -> float:
    if given is not None:
        return given
    extra = launch.get("extra") if isinstance(launch.get("extra"), dict) else {}
    value = extra.get(key)
    return float(value) if value is not None else default


def plan(
    provider: Provider,
    ledger: Ledger,
    grace_minutes: Optional[float] = None,
    loading_minutes: Optional[float] = None,
    stuck_minutes: float = 10,
    now: Optional[float] = None,
) -> list[Verdict]:
    now = time.time() if now is None else now
    verdicts = []
    for row in provider.list(label_prefix=LABEL_PREFIX):
        launch_id = launch_id_of(row.get("label"))
        launch = ledger.get(launch_id) if launch_id else None
        status = row.get("actual_status")
        started = float(row.get("start_date") or now)
        reason = None
        if launch is None:
            reason = "labeled by vast-launch but unknown to this ledger"
        else:
            grace = _launch_setting(launch, "reap_grace_minutes", grace_minutes, DEFAULT_GRACE_MINUTES)
            loading = _launch_setting(launch, "loading_timeout_minutes", loading_minutes, DEFAULT_LOADING_MINUTES)
            if launch["state"] in TERMINAL:
                reason = f"its launch ended ({launch['state']}) but the instance still exists"
            elif launch.get("deadline") and now > launch["deadline"] + grace * 60:
                reason = f"past its deadline by {(now - launch['deadline']) / 60:.1f} min"
            elif status in LOADING and now - _first_seen(ledger, launch_id, "loading", started) > loading * 60:
                reason = f"stuck in {status or 'provisioning'} for more than {loading:g} min"
            elif status in STOPPED_WITHOUT_TEARDOWN and now - _first_seen(ledger, launch_id, status, started) > stuck_minutes * 60:
                reason = f"{status} for more than {stuck_minutes:g} min (it never runs again)"
        if reason:
            verdicts.append(Verdict(int(row["id"]), launch_id, status, float(row.get("dph_total") or 0), reason))
    return verdicts


def reap(provider: Provider, ledger: Ledger, verdicts: list[Verdict]) -> list[Verdict]:
    """Destroy each; a failure is recorded on its verdict and the others still go ahead."""
    for v in verdicts:
        launch = ledger.get(v.launch_id) if v.launch_id else None
        final = launch is not None and launch["state"] not in TERMINAL
        try:
            destroy_and_record(provider, ledger if launch else None, v.launch_id, v.instance_id, f"reaped: {v.reason}", final=final)
            v.destroyed = True
        except ProviderError as exc:
            v.error = str(exc)
    return verdicts
