"""Hourly rollups of what ended launches cost, kept in the ledger as launches end, so that `cost --by gpu|day|stage`
and every report's totals over a year of launches read a few thousand rows instead of a million.

A launch counts in the rollup once its cost is frozen (`cost_usd` set by `Ledger.finish`), in the hour it was
created, under its target, three ways: `all` (the totals and `--by day`), `gpu` (its GPU name) and `stage` (its
cost split over its stages, `billing.stage_parts`). Every write that may change a frozen launch's figures (its
columns, its bill, its stages, a reopen) takes its old contribution out and puts its new one in, inside the same
transaction (`Ledger._rolled`). Reports read whole hours from here and compute the rest (the partial hours at a
window's edges, launches still open, bills read just now) from the launches themselves (reports/cost_query.py).
"""

from __future__ import annotations

import sqlite3
from typing import Iterable, Optional

from .billing import stage_parts

SCHEMA = """
CREATE TABLE IF NOT EXISTS cost_rollup (
    hour INTEGER NOT NULL,
    target TEXT NOT NULL,
    dim TEXT NOT NULL,
    key TEXT NOT NULL,
    launches INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    billed_usd REAL NOT NULL,
    unbilled INTEGER NOT NULL,
    gpu_hours REAL NOT NULL,
    billed_cost_usd REAL NOT NULL,
    PRIMARY KEY (hour, target, dim, key)
)
"""
ROW_COLUMNS = "id, created_at, ended_at, target, gpu_name, num_gpus, dph_total, gpu_seconds, cost_usd, billed_usd"
FIGURES = ("launches", "cost_usd", "billed_usd", "unbilled", "gpu_hours", "billed_cost_usd")
Part = tuple  # (hour, target, dim, key, launches, cost, billed, unbilled, gpu_hours, billed_cost)


def gpu_key(gpu_name: Optional[str]) -> str:
    return gpu_name or "(no instance)"


def contributions(row: dict, stages: list[dict], billed: Optional[float] = None) -> list[Part]:
    """What one frozen launch adds to the rollup (nothing while its cost is not frozen). `billed`: a bill read
    just now, in place of the row's."""
    cost = row["cost_usd"]
    if cost is None:
        return []
    billed = row["billed_usd"] if billed is None else billed
    hour, target = int(row["created_at"] // 3600), row["target"] or ""
    gpu_hours = (row["gpu_seconds"] or 0.0) / 3600.0 * (row["num_gpus"] or 1)
    unbilled = 1 if billed is None else 0
    b, bc = (billed or 0.0), (cost if billed is not None else 0.0)
    parts = [
        (hour, target, "all", "", 1, cost, b, unbilled, gpu_hours, bc),
        (hour, target, "gpu", gpu_key(row["gpu_name"]), 1, cost, b, unbilled, gpu_hours, bc),
    ]
    for name, usd, share in stage_parts(row, stages):
        parts.append((hour, target, "stage", name, 1, usd, b * share, unbilled, gpu_hours * share, bc * share))
    return parts


def read_launch(db: sqlite3.Connection, launch_id: str) -> tuple[Optional[dict], list[dict]]:
    cur = db.execute(f"SELECT {ROW_COLUMNS} FROM launches WHERE id = ?", (launch_id,))
    names = [d[0] for d in cur.description]
    found = cur.fetchone()
    if found is None or found[names.index("cost_usd")] is None:
        return None, []
    stages = db.execute('SELECT name, start, "end" FROM stages WHERE launch_id = ?', (launch_id,)).fetchall()
    return dict(zip(names, found)), [{"name": n, "start": s, "end": e} for n, s, e in stages]


def of_launch(db: sqlite3.Connection, launch_id: str) -> list[Part]:
    row, stages = read_launch(db, launch_id)
    return contributions(row, stages) if row else []


def apply(db: sqlite3.Connection, parts: Iterable[Part], sign: int = 1) -> None:
    db.executemany(
        "INSERT INTO cost_rollup VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hour, target, dim, key) DO UPDATE SET "
        + ", ".join(f"{f} = {f} + excluded.{f}" for f in FIGURES),
        [(*p[:4], *(sign * v for v in p[4:])) for p in parts],
    )


def rebuild(db: sqlite3.Connection) -> int:
    """The whole rollup from the frozen launches (a migration: once per ledger). Launches and their stages are
    read in one ordered pass each and merged; the sums are kept in memory (hours x keys, a few thousand)."""
    db.execute("DELETE FROM cost_rollup")
    sums: dict[tuple, list] = {}
    stages = db.execute('SELECT launch_id, name, start, "end" FROM stages ORDER BY launch_id')
    pending = next(stages, None)
    cur = db.execute(f"SELECT {ROW_COLUMNS} FROM launches WHERE cost_usd IS NOT NULL ORDER BY id")
    names = [d[0] for d in cur.description]
    n = 0
    for found in cur:
        row = dict(zip(names, found))
        mine = []
        while pending is not None and pending[0] < row["id"]:
            pending = next(stages, None)
        while pending is not None and pending[0] == row["id"]:
            mine.append({"name": pending[1], "start": pending[2], "end": pending[3]})
            pending = next(stages, None)
        for p in contributions(row, mine):
            acc = sums.setdefault(p[:4], [0, 0.0, 0.0, 0, 0.0, 0.0])
            for i, v in enumerate(p[4:]):
                acc[i] += v
        n += 1
    db.executemany("INSERT INTO cost_rollup VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [(*k, *v) for k, v in sums.items()])
    return n
