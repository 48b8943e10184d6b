"""The cost report as it was computed before it moved into SQL (a Python loop over every launch), kept
as the reference the SQL must agree with (test_cost.py)."""

import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable, Optional

from vast_launch.billing import estimate
from vast_launch.ledger import window_clause
from vast_launch.reports.cost import BY_CHOICES, stage_parts

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
) -> tuple:
    if by not in BY_CHOICES:
        raise ValueError(f"--by must be one of {', '.join(BY_CHOICES)}")
    launches = launch_rows(ledger, since, until, now, billed)
    totals = totals_of(launches)
    if by == "launch":
        return launches, totals
    if by != "stage":
        rows = _aggregate((_group_key(r, by), r, r["cost_usd"], 1.0) for r in launches)
        return rows, totals
    by_launch: dict[str, list[dict]] = defaultdict(list)
    for st in ledger.stages(since=since, until=until):
        by_launch[st["launch_id"]].append(st)
    keyed = ((name, r, usd, share) for r in launches for name, usd, share in stage_parts(r, by_launch.get(r["launch_id"], [])))
    return _aggregate(keyed), totals
