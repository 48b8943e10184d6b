"""What launches cost: estimates from the ledger, the provider's bill, and attribution.

One launch's estimate is `billing.estimate`; a finished launch's is frozen in the ledger by
`Ledger.finish`, so reports over many launches read one table.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Optional

from ..billing import estimate
from ..ledger import window_clause

OUTSIDE_STAGES = "(outside stages)"
BY_CHOICES = ("launch", "group", "stage", "gpu", "day")


# --- reports ------------------------------------------------------------------------------------
# The report's launch row, computed by SQLite: a Python loop over 100k rows costs more than the query.
LAUNCH_ROW_SQL = """
SELECT id AS launch_id, created_at, ended_at, state, target, wandb_group, gpu_name, num_gpus, instance_id,
       dph_total, gpu_seconds, storage_seconds,
       COALESCE(gpu_seconds, 0) / 3600.0 * COALESCE(num_gpus, 1) AS gpu_hours,
       cost_usd, billed_usd, cost_usd - billed_usd AS difference_usd
FROM launches WHERE (target IS NULL OR target != 'slurm')
"""
LAUNCH_ROW_NAMES = [
    "launch_id",
    "created_at",
    "ended_at",
    "state",
    "target",
    "wandb_group",
    "gpu_name",
    "num_gpus",
    "instance_id",
    "dph_total",
    "gpu_seconds",
    "storage_seconds",
    "gpu_hours",
    "cost_usd",
    "billed_usd",
    "difference_usd",
]


@dataclass
class Report:
    by: str
    since: Optional[float]
    until: Optional[float]
    rows: list[dict]
    totals: dict
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"by": self.by, "since": self.since, "until": self.until, "rows": self.rows, "totals": self.totals, "notes": self.notes}


def launch_rows(
    ledger, since: Optional[float], until: Optional[float], now: Optional[float] = None, billed: Optional[dict] = None
) -> list[dict]:
    """One row per launch with its cost; finished launches come from the frozen columns.

    billed: launch id -> billed $ read just now but not yet settled (so not in the ledger).
    """
    now = time.time() if now is None else now
    window, args = window_clause(since, until)
    cur = ledger.db.execute(LAUNCH_ROW_SQL + window + " ORDER BY created_at", args)
    cur.row_factory = None  # plain tuples: several times faster than sqlite3.Row
    names = LAUNCH_ROW_NAMES
    rows = [dict(zip(names, tup)) for tup in cur]
    for r in rows:
        if r["cost_usd"] is None:  # still active (or ended before costs were frozen): replay its timeline
            est = estimate(ledger.get(r["launch_id"]), ledger.events(r["launch_id"]), now)
            r.update(
                gpu_seconds=est["gpu_seconds"],
                storage_seconds=est["storage_seconds"],
                cost_usd=est["cost_usd"],
                gpu_hours=est["gpu_hours"],
            )
        if r["billed_usd"] is None and billed and r["launch_id"] in billed:
            r["billed_usd"] = billed[r["launch_id"]]
        if r["billed_usd"] is not None:
            r["difference_usd"] = r["cost_usd"] - r["billed_usd"]
    return rows


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


def _group_key(row: dict, by: str) -> str:
    if by == "group":
        return row["wandb_group"] or "(no group)"
    if by == "gpu":
        return row["gpu_name"] or "(no instance)"
    if by == "day":
        return datetime.fromtimestamp(row["created_at"], timezone.utc).strftime("%Y-%m-%d")
    raise ValueError(by)


def _aggregate(keyed: Iterable[tuple[str, dict, float, float]]) -> list[dict]:
    """keyed: (key, launch row, dollars of that launch under the key, its share of the launch in 0..1)."""
    out: dict[str, dict] = {}
    for key, row, cost, share in keyed:
        agg = out.setdefault(
            key, {"key": key, "launches": set(), "cost_usd": 0.0, "billed_usd": 0.0, "billed_known": True, "gpu_hours": 0.0}
        )
        agg["launches"].add(row["launch_id"])
        agg["cost_usd"] += cost
        agg["gpu_hours"] += row["gpu_hours"] * share
        if row["billed_usd"] is None:
            agg["billed_known"] = False
        else:
            agg["billed_usd"] += row["billed_usd"] * share
    rows = []
    for agg in out.values():
        billed = agg["billed_usd"] if agg["billed_known"] else None
        rows.append(
            {
                "key": agg["key"],
                "launches": len(agg["launches"]),
                "cost_usd": agg["cost_usd"],
                "billed_usd": billed,
                "gpu_hours": agg["gpu_hours"],
                "usd_per_gpu_hour": agg["cost_usd"] / agg["gpu_hours"] if agg["gpu_hours"] else None,
            }
        )
    return sorted(rows, key=lambda r: -r["cost_usd"])


def totals_of(rows: list[dict]) -> dict:
    cost = sum(r["cost_usd"] for r in rows)
    gpu_hours = sum(r["gpu_hours"] for r in rows)
    known = [r for r in rows if r["billed_usd"] is not None]
    return {
        "launches": len(rows),
        "cost_usd": cost,
        "gpu_hours": gpu_hours,
        "usd_per_gpu_hour": cost / gpu_hours if gpu_hours else None,
        "billed_usd": sum(r["billed_usd"] for r in known),
        "billed_launches": len(known),
        "estimate_of_billed_usd": sum(r["cost_usd"] for r in known),
    }


def build_report(
    ledger,
    by: str = "launch",
    since: Optional[float] = None,
    until: Optional[float] = None,
    now: Optional[float] = None,
    billed: Optional[dict] = None,
) -> Report:
    if by not in BY_CHOICES:
        raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}")
    launches = launch_rows(ledger, since, until, now, billed)
    totals = totals_of(launches)
    if by == "launch":
        return Report(by, since, until, launches, totals)
    if by != "stage":
        rows = _aggregate((_group_key(r, by), r, r["cost_usd"], 1.0) for r in launches)
        return Report(by, since, until, rows, totals)
    by_launch: dict[str, list[dict]] = defaultdict(list)
    for st in ledger.stages(since=since, until=until):
        by_launch[st["launch_id"]].append(st)
    keyed = ((name, r, usd, share) for r in launches for name, usd, share in stage_parts(r, by_launch.get(r["launch_id"], [])))
    return Report(by, since, until, _aggregate(keyed), totals)


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


def unbilled_launches(ledger, since: Optional[float], until: Optional[float], count_only: bool = False):
    """Vast launches in the window whose bill is not frozen yet (or just their number)."""
    what = "count(*)" if count_only else "id, provider_url, ended_at"
    window, args = window_clause(since, until)
    sql = f"SELECT {what} FROM launches WHERE billed_usd IS NULL AND target = 'vast' AND instance_id IS NOT NULL" + window
    if count_only:
        return ledger.db.execute(sql, args).fetchone()[0]
    return [dict(r) for r in ledger.db.execute(sql, args)]
