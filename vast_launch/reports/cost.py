"""What launches cost: estimates from the ledger, the provider's bill, and attribution.

One launch's estimate is `billing.estimate`; a finished launch's is frozen in the ledger by
`Ledger.finish`, so reports over many launches read one table.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ..billing import OUTSIDE_STAGES, launch_seconds, stage_parts, stage_split  # noqa: F401  (their home is billing)
from ..ledger import window_clause

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


def build_report(
    ledger,
    by: str = "launch",
    since: Optional[float] = None,
    until: Optional[float] = None,
    now: Optional[float] = None,
    billed: Optional[dict] = None,
    left_out: tuple = (),
    stream: bool = False,
    limit: Optional[int] = None,
) -> Report:
    """The report, aggregated by SQLite (cost_query.py); stream: by launch, the rows as an iterator.

    limit: by launch the most recent launches only, else the costliest rows only; the totals count every launch
    of the window, and a note says what was left out."""
    from .cost_query import CostQuery

    if by not in BY_CHOICES:
        raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}")
    q = CostQuery(ledger, since, until, now, billed, left_out)
    totals = q.totals()
    notes = []
    if by == "launch":
        rows = q.launches(limit)
        if limit and totals["launches"] > limit:
            notes.append(f"the {limit:,} most recent of {totals['launches']:,} launches are listed; --limit 0 lists every one")
    else:
        rows = q.grouped(by, limit + 1 if limit else None)
        if limit:
            rows = list(rows)
            if len(rows) > limit:
                rows = rows[:limit]
                notes.append(f"the {limit:,} costliest rows are listed (the totals count every launch); --limit 0 lists all")
    return Report(by, since, until, rows if stream else list(rows), totals, notes)


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
