"""Recovery of interruptible launches nobody follows (lifecycle.recover), driven by the ledger alone:
`vast-launch watch` (a supervisor on a laptop, in CI or on a small always-on machine) and
`vast-launch reap --recover` (cron).

Each pass looks at the open launches whose launcher no longer follows them. An instance stopped (outbid)
longer than `stopped_minutes`, exited, offline or unknown, loading past its timeout, or gone without a result
in the outputs store is destroyed (confirmed) and the launch resumes on the next fitting offer, from its
outputs store, while attempts and budget (`max_cost_usd` over every attempt) last.

Safe to run twice and to kill at any moment: a launch is acted on only under an exclusive lock on a file of the
state dir (released by the kernel when its holder dies); what a pass decides it reads from the ledger and the
provider, never from memory; an instance a killed pass created but did not record is found by its label and
adopted, never rented twice.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..errors import LaunchError
from ..launcher_process import launcher_alive
from ..ledger import Ledger
from ..states import ENDED_WITHOUT_TEARDOWN, NOT_YET_RUNNING, RUNNING, STOPPED, TERMINAL
from ..store import attempt_result
from ..targets.base import Instance
from .attempts import Settings, attempt_of, attempts_used, stop_reason
from .provider import Provider, ProviderError
from .settle import settle_one
from .teardown import destroy_and_record, instances_by_label


def _since(events: list[dict], status: str) -> Optional[float]:
    """When the current instance last entered `status` (None: it is not in it by the ledger)."""
    t = None
    for ev in events:
        if ev["state"] == status and t is None:
            t = ev["t"]
        elif ev["state"] != status and ev["state"] in (RUNNING, STOPPED, "loading", "created", "resuming"):
            t = None
    return t


def trigger(row: dict, inst: Optional[Instance], events: list[dict], settings: Settings, now: float) -> Optional[str]:
    """Why this launch's instance must be replaced now, or None while it may still finish where it is."""
    iid = row.get("instance_id")
    if inst is None:
        return None if attempt_result(row) is not None else f"instance {iid} gone without a result"
    if inst.status in ENDED_WITHOUT_TEARDOWN:
        return f"instance {iid} {inst.status} without a result"
    if inst.status == STOPPED:
        since = _since(events, STOPPED) or now
        if now - since >= settings.stopped_minutes * 60:
            return f"instance {iid} stopped (outbid) for more than {settings.stopped_minutes:g} min"
    if inst.status in NOT_YET_RUNNING:
        since = _since(events, "loading") or float(row.get("updated_at") or now)
        if now - since > settings.loading_minutes * 60:
            return f"instance {iid} still loading after {settings.loading_minutes:g} min"
    return None


@contextmanager
def launch_lock(ledger: Ledger, launch_id: str) -> Iterator[bool]:
    """An exclusive, non-blocking lock on one launch for one supervisor; yields False when another holds it.
    The kernel releases it when its holder exits, however it exits."""
    locks = Path(ledger.path).parent / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(locks / f"{launch_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def needs_watching(row: dict) -> bool:
    """Open, on Vast, recoverable, and no launcher of its own follows it any more."""
    return row["state"] not in TERMINAL and row.get("target") == "vast" and Settings.of(row) is not None and not launcher_alive(row)


class Supervisor:
    """One pass over the ledger's open recoverable launches (`pass_once`); `resume` rents the next attempt of
    a launch (a detached Launcher's resume)."""

    def __init__(
        self,
        ledger: Ledger,
        provider_for: Callable[[dict], Provider],
        resume: Callable[[dict], object],
        echo: Callable[[str], None] = print,
    ):
        self.ledger, self.provider_for, self.resume, self.echo = ledger, provider_for, resume, echo

    def pass_once(self, now: Optional[float] = None) -> int:
        """Act on every launch that needs it; the number of launches still open and watched."""
        watched = 0
        for row in self.ledger.launches(active_only=True):
            if not needs_watching(row):
                continue
            watched += 1
            with launch_lock(self.ledger, row["id"]) as mine:
                if not mine:
                    continue  # another supervisor has it now
                try:
                    self._one(self.ledger.get(row["id"]), time.time() if now is None else now)
                except (LaunchError, OSError) as exc:
                    self.echo(f"{row['id']}: {exc}; tried again on the next pass")
        return watched

    def _one(self, row: dict, now: float) -> None:
        if not needs_watching(row):  # ended, or picked up, since the list was read
            return
        launch_id, settings = row["id"], Settings.of(row)
        provider = self.provider_for(row)
        iid = row.get("instance_id")
        inst = self._current(provider, row)
        if inst is not None and inst.id != iid:
            return  # adopted: looked at on the next pass
        events = self.ledger.events(launch_id)
        if inst is not None and inst.status != row["state"]:
            self.ledger.event(launch_id, inst.status, {"instance_id": inst.id, "seen_by": "watch"})
            events = self.ledger.events(launch_id)
        if inst is None and row["state"] in ("resuming", "searching", "creating"):
            why = "its supervisor ended before another instance was rented"
        else:
            why = trigger(row, inst, events, settings, now)
        if why is None:
            if inst is None:  # gone with its result in the store: settled like any other ending
                settle_one(self.ledger, row, provider)
            return
        self.recover(row, inst, why)

    def _current(self, provider: Provider, row: dict) -> Optional[Instance]:
        """The launch's live instance: the recorded one, else one carrying its label that a killed pass created
        and never recorded (adopted; any further one destroyed: one launch, one instance)."""
        iid = row.get("instance_id")
        inst = provider.show(int(iid)) if iid else None
        if inst is not None and row["state"] != "resuming":
            return inst
        labeled = sorted((i for i in instances_by_label(provider, row["id"]) if i.id != iid), key=lambda i: i.id)
        if not labeled:
            return inst
        keep, extra = labeled[-1], labeled[:-1] + ([inst] if inst is not None else [])
        for other in extra:
            destroy_and_record(provider, self.ledger, row["id"], other.id, "a second instance of one launch; destroyed", final=False)
        self.ledger.event(row["id"], "created", {"instance_id": keep.id, "adopted": "found by its label"}, instance_id=keep.id)
        self.echo(f"{row['id']}: adopted instance {keep.id}, created by a supervisor that ended before recording it")
        return keep

    def recover(self, row: dict, inst: Optional[Instance], why: str) -> None:
        launch_id, settings = row["id"], Settings.of(row)
        provider = self.provider_for(row)
        stop = stop_reason(row, self.ledger.events(launch_id), settings.max_attempts, settings.max_cost_usd)
        if inst is not None:
            destroy_and_record(provider, self.ledger, launch_id, inst.id, f"{why}; destroyed by the supervisor", final=False)
        if stop is not None:
            self.ledger.finish(launch_id, "destroyed", f"{why}; {stop}")
            self.echo(f"{launch_id}: {why}; {stop}")
            return
        used = attempts_used(row, self.ledger.events(launch_id))
        if used != attempt_of(row):  # the attempt opened by a supervisor that ended before renting: taken again
            self.ledger.update(launch_id, extra={**row["extra"], "attempt": used})
        self.echo(f"{launch_id}: {why}: attempt {used + 1}/{settings.max_attempts} on another offer, from the outputs store")
        self.ledger.event(launch_id, "recovering", {"why": why, "attempt": used + 1, "by": "watch"}, set_state=False)
        try:
            self.resume(self.ledger.get(launch_id))
        except ProviderError:
            raise
        except LaunchError as exc:
            if self.ledger.get(launch_id)["state"] not in TERMINAL:
                self.ledger.finish(launch_id, "failed", f"{why}; recovery failed: {exc}")
            self.echo(f"{launch_id}: recovery failed: {exc}")
