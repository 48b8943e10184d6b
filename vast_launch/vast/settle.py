"""Make the ledger tell the truth after a launcher died: ask the provider about every open launch.

A launcher killed by SIGKILL, a closed laptop or a cancelled CI job leaves its row at
`creating`/`loading`/`running`. `status`, `reap`, `cost` and `down` call `settle` first:
- a row whose launcher is still alive on this machine is that launcher's to write, and is skipped;
- a local launch whose launcher is gone ended with it (the embedded cloud lives in the launcher);
- a Vast launch is looked up by instance id, or by its label when no id was recorded: an instance
  that is gone becomes `destroyed` with the best end reason known and an estimate that stops when
  it vanished; an instance found by label is adopted; none at all means nothing was created.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from ..errors import LaunchError, UserError
from ..launcher_process import launcher_alive
from ..ledger import Ledger
from ..protocol import BOOT_LOG, Outcome
from ..states import TERMINAL
from ..store import attempt_result
from .attempts import AWAITING, awaits_recovery
from .provider import AuthRejected, Provider, ProviderError, Unreachable
from .teardown import instances_by_label


def known_outcome(ledger: Ledger, launch_id: str) -> Outcome:
    """What the follower had learnt from the instance's log before it stopped following."""
    out = Outcome()
    for ev in ledger.events(launch_id):
        try:
            detail = json.loads(ev["detail"]) if ev["detail"] else {}
        except (TypeError, json.JSONDecodeError):
            detail = {}
        if ev["state"] in ("teardown", "stages_ended") and isinstance(detail, dict):
            out.rc, out.failed_stage = detail.get("rc"), detail.get("failed_stage") or ""
        elif ev["state"] == "watchdog" and isinstance(detail, dict):
            out.watchdog = detail.get("why")
    return out


class StoreUnreadable(LaunchError):
    """One row's outputs store could not be read: that row waits for the next settle, the others do not."""


def outcome_of_gone(ledger: Ledger, row: dict) -> Outcome:
    """How a launch whose instance is gone ended: the result.json its instance left in the outputs store
    (with its exact stage times), else what a follower had learnt from its log."""
    try:
        doc = attempt_result(row)
    except UserError as exc:  # read again by the next settle; one row's store does not stop the others'
        raise StoreUnreadable(f"its outputs store: {exc}") from None
    if doc is None:
        return known_outcome(ledger, row["id"])
    for t in doc.get("stage_times") or []:
        ledger.record_stage(row["id"], t["name"], t["start"], t["end"], t["rc"])
    ledger.event(
        row["id"], "teardown", {"rc": doc.get("rc"), "failed_stage": doc.get("failed_stage"), "from": "result.json"}, set_state=False
    )
    return Outcome.from_result(doc)


def _gone_at(provider: Provider, row: dict, iid: int) -> float:
    """When the instance vanished: its bill's last timestamp, else the last thing the ledger saw."""
    now = time.time()
    last_seen = float(row.get("updated_at") or row["created_at"])
    try:
        lines = [
            r for r in provider.invoices(float(row["created_at"]), now) if str(r.get("instance_id")) == str(iid) and r.get("timestamp")
        ]
    except (ProviderError, TimeoutError):
        lines = []
    if lines:
        return min(max(float(max(r["timestamp"] for r in lines)), last_seen), now)
    return last_seen


def _local_end(row: dict) -> float:
    """A local launch ended with its launcher: the instance's log was last written about then."""
    from .local import local_workdir

    t = float(row.get("updated_at") or row["created_at"])
    workdir = local_workdir(row)
    try:
        t = max(t, (workdir / BOOT_LOG).stat().st_mtime) if workdir else t
    except OSError:
        pass
    return min(t, time.time())


def settle_local(ledger: Ledger, rows: list[dict]) -> None:
    """A local launch whose launcher is gone ended with it: the embedded cloud lived in that process."""
    for row in rows:
        if row["state"] not in TERMINAL and launcher_alive(row) is False:
            ledger.finish(
                row["id"],
                "destroyed",
                "the launcher ended before the launch did; the embedded local cloud and its instance ended with it",
                t=_local_end(row),
            )


def settle(ledger: Ledger, rows: list[dict], provider_for: Callable[[dict], Provider]) -> list[str]:
    """Settle the open rows among `rows` with their cloud; returns notes for rows that could not be settled."""
    notes: list[str] = []
    providers: dict[str, Provider] = {}
    unreachable: dict[str, tuple[Exception, list[str]]] = {}
    for row in rows:
        if row["state"] in TERMINAL or launcher_alive(row):
            continue
        url = row.get("provider_url") or ""
        if url in unreachable:
            unreachable[url][1].append(row["id"])
            continue
        try:
            if url not in providers:
                providers[url] = provider_for(row)
            settle_one(ledger, row, providers[url])
        except LaunchError as exc:
            if isinstance(exc, (UserError, Unreachable, AuthRejected)):
                # one wait on a dead or keyless provider, not one per row, and one line; never another row's error
                unreachable[url] = (exc, [row["id"]])
            else:
                notes.append(f"{row['id']}: not settled ({exc})")
    for exc, ids in unreachable.values():
        notes.append(f"{ids[0]}: not settled ({exc})" if len(ids) == 1 else f"{len(ids)} open launches not settled ({exc})")
    return notes


def settle_one(ledger: Ledger, row: dict, provider: Provider) -> None:
    launch_id, iid = row["id"], row.get("instance_id")
    if not iid:
        found = instances_by_label(provider, launch_id)
        if not found:
            ledger.finish(launch_id, "aborted", "no instance exists for this launch: its launcher ended before one was created")
            return
        iid = found[0].id
        ledger.event(launch_id, "created", {"instance_id": iid, "adopted": "found by its label"}, instance_id=iid)
        row = ledger.get(launch_id)
    inst = provider.show(int(iid))
    if inst is None:
        if row["state"] == "gone":
            return  # already seen gone, waiting for recovery
        outcome = outcome_of_gone(ledger, row)
        if outcome.rc is None and not outcome.watchdog and awaits_recovery(ledger, row):
            ledger.event(launch_id, "gone", {"instance_id": iid, "seen_by": "settle"}, t=_gone_at(provider, row, int(iid)))
            ledger.update(launch_id, end_reason=f"{outcome.end_reason()}; {AWAITING}")
            return
        ledger.finish(launch_id, "destroyed", outcome.end_reason(), t=_gone_at(provider, row, int(iid)))
        return
    if inst.status != row["state"]:
        ledger.event(launch_id, inst.status, {"instance_id": iid, "seen_by": "settle"})
