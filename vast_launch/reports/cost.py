"""What launches cost: estimates from the ledger, the provider's bill, and attribution.

One launch's estimate is `billing.estimate`; a finished launch's is frozen in the ledger by
`Ledger.finish`, so reports over many launches read one table.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ..ledger import window_clause
from .cost_query import OUTSIDE_STAGES

BY_CHOICES = ("launch", "group", "stage", "gpu", "day")


# --- reports ------------------------------------------------------------------------------------
@dataclass
class Report:
    """rows: a list, or (by launch, for the CLI) an iterator read once as it is written out."""

    by: str
    since: Optional[float]
    until: Optional[float]
    rows: Iterable[dict]
    totals: dict
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "by": self.by,
            "since": self.since,
            "until": self.until,
            "rows": list(self.rows),
            "totals": self.totals,
            "notes": self.notes,
        }


def launch_rows(
    ledger,
    since: Optional[float],
    until: Optional[float],
    now: Optional[float] = None,
    billed: Optional[dict] = None,
    left_out: tuple = (),
) -> list[dict]:
    """One row per launch with its cost; finished launches come from the frozen columns.

    billed: launch id -> billed $ read just now but not yet settled (so not in the ledger).
    """
    from .cost_query import CostQuery

    return list(CostQuery(ledger, since, until, now, billed, left_out).launches())


def stage_split(launch: dict, stages: list[dict]) -> dict[str, float]:
    """Split one launch's cost over its stages; the rest (setup, loading, teardown) goes to OUTSIDE_STAGES.

    A stage costs its wall time at the all-in rate. The parts always add up to the launch's cost:
    if clock skew makes the stages longer than the launch, they are scaled down to fit.
    """
    total = launch["cost_usd"] or 0.0
    rate_dph = float(launch["dph_total"] or 0.0)
    parts: dict[str, float] = defaultdict(float)
    for st in stages:
        end = st["end"] if st["end"] is not None else (launch["ended_at"] or time.time())
        parts[st["name"]] += max(end - st["start"], 0.0) * rate_dph / 3600
    inside = sum(parts.values())
    if inside > total and inside > 0:
        scale = total / inside
        parts = defaultdict(float, {k: v * scale for k, v in parts.items()})
        inside = total
    parts[OUTSIDE_STAGES] += total - inside
    return parts


def stage_parts(launch: dict, stages: list[dict]) -> list[tuple[str, float, float]]:
    """(stage, dollars, share of the launch in 0..1). A launch that cost nothing (a free local cloud) is
    shared by wall time, so its GPU hours still go to the stages that used them."""
    total = launch["cost_usd"]
    if total:
        return [(name, usd, usd / total) for name, usd in stage_split(launch, stages).items()]
    seconds = stage_split({**launch, "cost_usd": launch_seconds(launch), "dph_total": 3600.0}, stages)
    whole = sum(seconds.values())
    return [(name, 0.0, s / whole if whole else float(name == OUTSIDE_STAGES)) for name, s in seconds.items()]


def launch_seconds(launch: dict) -> float:
    return max((launch["ended_at"] or time.time()) - launch["created_at"], 0.0)


def build_report(
    ledger,
    by: str = "launch",
    since: Optional[float] = None,
    until: Optional[float] = None,
    now: Optional[float] = None,
    billed: Optional[dict] = None,
    left_out: tuple = (),
    stream: bool = False,
) -> Report:
    """The report, aggregated by SQLite (cost_query.py); stream: by launch, the rows as an iterator."""
    from .cost_query import CostQuery

    if by not in BY_CHOICES:
        raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}")
    q = CostQuery(ledger, since, until, now, billed, left_out)
    totals = q.totals()
    if by == "launch":
        return Report(by, since, until, q.launches() if stream else list(q.launches()), totals)
    return Report(by, since, until, q.grouped(by), totals)


# --- reconciliation -------------------------------------------------------------------------------
# Vast's invoices can lag the destroy; a bill is frozen in the ledger only once it has settled.
SETTLE_SECONDS = 3600


def billed_by_instance(invoice_rows: Iterable[dict]) -> dict[int, float]:
    out: dict[int, float] = defaultdict(float)
    for row in invoice_rows:
        iid = row.get("instance_id")
        if iid is not None:
            out[int(iid)] += float(row.get("amount") or 0.0)
    return out


def reconcile(
    ledger,
    launch_ids: list[str],
    invoices: Callable[[float, float], list[dict]],
    settled: Callable[[dict], bool],
    now: Optional[float] = None,
) -> dict[str, float]:
    """Billed $ per launch from the provider's invoice lines; settled bills are frozen in the ledger."""
    now = time.time() if now is None else now
    rows = [ledger.get(lid) for lid in launch_ids]
    rows = [r for r in rows if r is not None]
    if not rows:
        return {}
    lines = invoices(min(r["created_at"] for r in rows) - 60, now + 60)
    per_instance = billed_by_instance(lines)
    out = {}
    for r in rows:
        ids = ledger.instance_ids(r["id"])
        if not ids:
            continue
        out[r["id"]] = sum(per_instance.get(i, 0.0) for i in ids)
        if settled(r):
            ledger.update(r["id"], billed_usd=out[r["id"]], billed_at=now)
    return out


def unbilled_launches(ledger, since: Optional[float], until: Optional[float], target_name: str, count_only: bool = False):
    """A target's launches in the window whose bill is not frozen yet (or just their number)."""
    what = "count(*)" if count_only else "id, provider_url, ended_at"
    window, args = window_clause(since, until)
    sql = f"SELECT {what} FROM launches WHERE billed_usd IS NULL AND target = ? AND instance_id IS NOT NULL" + window
    args = [target_name, *args]
    if count_only:
        return ledger.db.execute(sql, args).fetchone()[0]
    return [dict(r) for r in ledger.db.execute(sql, args)]
