"""Layer 3 of teardown: find our instances that should not exist any more, and destroy them.

Labeled `vast-launch:<launch-id> ws=<workspace> dl=<deadline>`. This ledger's own launches are reaped
past the deadline (+ the launch's lifecycle.reap_grace_minutes), stuck in loading/exited/unknown/offline
longer than the limits, or still there although the ledger says their launch ended; an instance labeled
by this workspace but unknown to its ledger, at once. Another workspace's instance (a teammate's, or CI's
on the same account), or one whose label names no workspace and this ledger does not know, is reaped only
past its own deadline (from its label, else its VL_DEADLINE) plus grace: never while its own teardown
layers are armed, unless `all_workspaces` says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

from ..ledger import Ledger
from ..protocol import LABEL_PREFIX, parse_label
from ..states import ENDED_WITHOUT_TEARDOWN, NOT_YET_RUNNING, PENDING, TERMINAL
from ..targets.base import Instance
from .provider import DestroyUnconfirmed, Provider, ProviderError
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
    workspace: Optional[str] = None  # whose, as its label says
    unconfirmed: bool = False  # the destroy was sent but the instance is still there

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


def instance_deadline(inst: Instance, label) -> Optional[float]:
    """An instance's own hard deadline: its label's, else the VL_DEADLINE it was created with."""
    if label is not None and label.deadline:
        return label.deadline
    try:
        return float(inst.env["VL_DEADLINE"])
    except (KeyError, ValueError):
        return None


def plan(
    provider: Provider,
    ledger: Ledger,
    grace_minutes: Optional[float] = None,
    loading_minutes: Optional[float] = None,
    stuck_minutes: float = 10,
    now: Optional[float] = None,
    all_workspaces: bool = False,
) -> tuple[list[Verdict], list[Verdict]]:
    """(to reap, left alone): the second are other workspaces' instances still before their deadline."""
    now = time.time() if now is None else now
    me = ledger.workspace()
    verdicts, left = [], []
    for inst in provider.list(label_prefix=LABEL_PREFIX):
        label = parse_label(inst.label)
        launch_id = label.launch_id if label else None
        launch = ledger.get(launch_id) if launch_id else None
        status = inst.status
        started = inst.started_at or now
        owner = label.workspace if label else None
        reason = None
        if launch is None:
            reason, alone = _not_in_this_ledger(inst, label, me, grace_minutes, now, all_workspaces)
            if alone:
                left.append(Verdict(inst.id, launch_id, status, inst.dph_total, alone, workspace=owner))
        else:
            grace = _launch_setting(launch, "reap_grace_minutes", grace_minutes, DEFAULT_GRACE_MINUTES)
            loading = _launch_setting(launch, "loading_timeout_minutes", loading_minutes, DEFAULT_LOADING_MINUTES)
            if launch["state"] in TERMINAL:
                reason = f"its launch ended ({launch['state']}) but the instance still exists"
            elif launch.get("deadline") and now > launch["deadline"] + grace * 60:
                reason = f"past its deadline by {(now - launch['deadline']) / 60:.1f} min"
            elif status in NOT_YET_RUNNING and now - _first_seen(ledger, launch_id, PENDING, started) > loading * 60:
                reason = f"stuck in {status or 'provisioning'} for more than {loading:g} min"
            elif status in ENDED_WITHOUT_TEARDOWN and now - _first_seen(ledger, launch_id, status, started) > stuck_minutes * 60:
                reason = f"{status} for more than {stuck_minutes:g} min (it never runs again)"
        if reason:
            verdicts.append(Verdict(inst.id, launch_id, status, inst.dph_total, reason, workspace=owner))
    return verdicts, left


def _not_in_this_ledger(
    inst: Instance, label, me: str, grace_minutes, now: float, all_workspaces: bool
) -> tuple[Optional[str], Optional[str]]:
    """(why reap it, why leave it alone) for an instance this ledger does not know."""
    owner = label.workspace if label else None
    if owner == me:
        return "labeled by this workspace but unknown to its ledger", None
    whose = f"workspace {owner}'s" if owner else "a launch no ledger here knows (its label names no workspace)"
    deadline = instance_deadline(inst, label)
    grace = DEFAULT_GRACE_MINUTES if grace_minutes is None else grace_minutes
    if deadline is not None and now > deadline + grace * 60:
        return f"{whose}, past its own deadline by {(now - deadline) / 60:.1f} min", None
    if all_workspaces:
        return f"{whose} (--all-workspaces)", None
    if deadline is None:
        until = "its deadline is unknown"
    elif deadline > now:
        until = f"its deadline in {(deadline - now) / 60:.0f} min"
    else:
        until = f"{(now - deadline) / 60:.0f} min past its deadline, within the {grace:g} min grace"
    return None, f"{whose}: its own teardown is still armed ({until})"


def reap(provider: Provider, ledger: Ledger, verdicts: list[Verdict]) -> list[Verdict]:
    """Destroy each; a failure is recorded on its verdict and the others still go ahead."""
    for v in verdicts:
        launch = ledger.get(v.launch_id) if v.launch_id else None
        final = launch is not None and launch["state"] not in TERMINAL
        try:
            destroy_and_record(provider, ledger if launch else None, v.launch_id, v.instance_id, f"reaped: {v.reason}", final=final)
            v.destroyed = True
        except ProviderError as exc:
            v.error, v.unconfirmed = str(exc), isinstance(exc, DestroyUnconfirmed)
    return verdicts
