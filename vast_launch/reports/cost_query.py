"""The cost report computed by SQLite over the frozen per-launch figures, streaming: a year of a team's
launches (a million rows) in about a second and in bounded memory.

The few launches still open have no frozen figures: their estimates are replayed from their timelines in
Python (`billing.estimate`) and handed to the query in a temporary table, as are the amounts just read
from the provider's bill and not yet settled. What each grouping means is `billing.py`'s (`stage_split`,
`stage_parts`): the queries below compute the same numbers.
"""

from __future__ import annotations

import math
import time
from typing import Iterable, Iterator, Optional

from .. import cost_rollup
from ..billing import OUTSIDE_STAGES, estimate
from ..ledger import window_clause

LAUNCH_COLUMNS = [
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

# One row per launch in the window, open launches' estimates and fresh bills filled in.
_BASE = """
SELECT l.id AS launch_id, l.created_at, l.ended_at, l.state, l.target, l.wandb_group, l.gpu_name, l.num_gpus,
       l.instance_id, l.dph_total,
       COALESCE(l.gpu_seconds, o.gpu_seconds) AS gpu_seconds,
       COALESCE(l.storage_seconds, o.storage_seconds) AS storage_seconds,
       COALESCE(l.gpu_seconds, o.gpu_seconds, 0) / 3600.0 * COALESCE(l.num_gpus, 1) AS gpu_hours,
       COALESCE(l.cost_usd, o.cost_usd, 0) AS cost_usd,
       COALESCE(l.billed_usd, b.usd) AS billed_usd
FROM launches l
LEFT JOIN temp.open_estimates o ON o.id = l.id AND l.cost_usd IS NULL
LEFT JOIN temp.fresh_bills b ON b.id = l.id
WHERE 1 {where}
"""

# The launches alone, for the per-launch listing (launches(): open estimates and fresh bills added in Python).
_PLAIN = """
SELECT l.id, l.created_at, l.ended_at, l.state, l.target, l.wandb_group, l.gpu_name, l.num_gpus, l.instance_id, l.dph_total,
       l.gpu_seconds, l.storage_seconds, l.cost_usd, l.billed_usd
FROM launches l WHERE 1 {where}
"""

_GROUP_KEYS = {
    "group": "COALESCE(NULLIF(wandb_group, ''), '(no group)')",
    "gpu": "COALESCE(NULLIF(gpu_name, ''), '(no instance)')",
    "day": "strftime('%Y-%m-%d', created_at, 'unixepoch')",
}

_GROUPED = """
WITH base AS ({base})
SELECT {key} AS key, count(*) AS launches, sum(cost_usd) AS cost_usd, COALESCE(sum(billed_usd), 0), sum(billed_usd IS NULL),
       sum(gpu_hours) AS gpu_hours
FROM base GROUP BY 1
"""

# A launch's cost over its stages at its all-in rate, scaled down when (clock skew) the stages add up to more
# than the launch; the rest is OUTSIDE_STAGES. A launch that cost nothing is split by wall time instead.
_BY_STAGE = """
WITH base AS MATERIALIZED ({base}),
b AS MATERIALIZED (SELECT launch_id, gpu_hours, billed_usd, cost_usd,
             CASE WHEN cost_usd != 0 THEN cost_usd ELSE max(COALESCE(ended_at, :now) - created_at, 0) END AS basis,
             CASE WHEN cost_usd != 0 THEN COALESCE(dph_total, 0) / 3600.0 ELSE 1.0 END AS per_s,
             COALESCE(ended_at, :now) AS end_t
      FROM base),
s AS MATERIALIZED (SELECT b.launch_id, st.name, sum(max(COALESCE(st."end", b.end_t) - st.start, 0)) * b.per_s AS raw
      FROM stages st JOIN b ON b.launch_id = st.launch_id GROUP BY b.launch_id, st.name),
inside AS (SELECT launch_id, sum(raw) AS total FROM s GROUP BY launch_id),
scaled AS (SELECT b.*, COALESCE(i.total, 0) AS inside,
                  CASE WHEN COALESCE(i.total, 0) > b.basis AND COALESCE(i.total, 0) > 0 THEN b.basis / i.total ELSE 1.0 END AS scale
           FROM b LEFT JOIN inside i ON i.launch_id = b.launch_id),
parts AS (SELECT x.launch_id, s.name, s.raw * x.scale AS part, x.basis, x.cost_usd, x.gpu_hours, x.billed_usd
          FROM scaled x JOIN s ON s.launch_id = x.launch_id
          UNION ALL
          SELECT launch_id, :outside, basis - min(inside * scale, basis), basis, cost_usd, gpu_hours, billed_usd FROM scaled),
shared AS (SELECT launch_id, name, CASE WHEN cost_usd != 0 THEN part ELSE 0.0 END AS usd,
                  CASE WHEN basis > 0 THEN part / basis ELSE CAST(name = :outside AS REAL) END AS share, gpu_hours, billed_usd
           FROM parts)
SELECT name AS key, count(*) AS launches, sum(usd) AS cost_usd, COALESCE(sum(billed_usd * share), 0), sum(billed_usd IS NULL),
       sum(gpu_hours * share) AS gpu_hours
FROM shared GROUP BY name
"""

_TOTALS = """
WITH base AS ({base})
SELECT count(*), COALESCE(sum(cost_usd), 0), COALESCE(sum(gpu_hours), 0), COALESCE(sum(billed_usd), 0),
       count(billed_usd), COALESCE(sum(CASE WHEN billed_usd IS NOT NULL THEN cost_usd END), 0)
FROM base
"""


_ROLLUP = """
SELECT {key} AS key, sum(launches), sum(cost_usd), sum(billed_usd), sum(unbilled), sum(gpu_hours), sum(billed_cost_usd)
FROM cost_rollup WHERE dim = ? AND hour >= ? AND hour < ? {targets} GROUP BY 1
"""
FAR = 2**40  # an hour no window reaches
ROLLED_BY = {"gpu": "gpu", "stage": "stage", "day": "all"}  # --by: which of the rollup's ways it reads


class CostQuery:
    """The report's launches in a window, for one command: open launches estimated once, fresh bills in.

    Totals and --by gpu/day/stage read the hourly rollup for the window's whole hours (ended launches), and the
    launches themselves for the rest: its partial first and last hours, launches still open, and ended ones
    whose bill was read just now (their rollup share, unbilled, is taken out). --by launch and group read the
    launches (each row is its own key)."""

    def __init__(
        self,
        ledger,
        since: Optional[float],
        until: Optional[float],
        now: Optional[float] = None,
        billed: Optional[dict] = None,
        left_out: tuple = (),
    ):
        self.ledger, self.now, self.left_out = ledger, time.time() if now is None else now, left_out
        window, args = window_clause(since, until)
        window = window.replace("created_at", "l.created_at")
        if left_out:  # targets that rent nothing (a cluster one already has)
            window += f" AND COALESCE(l.target, '') NOT IN ({', '.join('?' * len(left_out))})"
            args = [*args, *left_out]
        self.base, self.args, self.window = _BASE.format(where=window), args, window
        # whole hours of the window, from the rollup: [lo, hi)
        self.lo = math.ceil(since / 3600) if since is not None else -FAR
        self.hi = math.floor(until / 3600) if until is not None else FAR
        targets = window[window.index(" AND COALESCE(l.target") :] if left_out else ""

        def between(a: Optional[float], b: Optional[float], more: str = "") -> tuple[str, list]:
            """Launches created in [a, b) (None: unbounded), each bound once so that the index reads the range."""
            where, wargs = window_clause(a, b)
            return where.replace("created_at", "l.created_at") + targets + more, [*wargs, *left_out]

        if self.hi <= self.lo:  # no whole hour in the window: every launch of it is read
            self.lo = self.hi = 0
            parts = [(window, list(args))]
        else:
            lo_t = self.lo * 3600.0 if since is not None else None
            hi_t = self.hi * 3600.0 if until is not None else None
            parts = [
                *([between(since, lo_t)] if since is not None else []),
                *([between(hi_t, until)] if until is not None else []),
                between(lo_t, hi_t, " AND l.cost_usd IS NULL"),
                between(
                    lo_t, hi_t, " AND l.cost_usd IS NOT NULL AND l.billed_usd IS NULL AND l.id IN (SELECT id FROM temp.fresh_bills)"
                ),
            ]
        self.rest = " UNION ALL ".join(_BASE.format(where=w) for w, _ in parts)
        self.rest_args = [a for _, wa in parts for a in wa]
        self.rebilled_where = parts[-1] if self.lo != self.hi else None
        db = ledger.db
        columns = "id TEXT PRIMARY KEY, gpu_seconds REAL, storage_seconds REAL, cost_usd REAL"
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS open_estimates ({columns})")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS fresh_bills (id TEXT PRIMARY KEY, usd REAL)")
        db.execute("DELETE FROM temp.open_estimates")
        db.execute("DELETE FROM temp.fresh_bills")
        open_ids = [r[0] for r in db.execute(f"SELECT id FROM launches l WHERE cost_usd IS NULL {window}", args)]
        for lid in open_ids:  # still open (or ended before costs were frozen): replay its timeline
            est = estimate(ledger.get(lid), ledger.events(lid), self.now)
            db.execute(
                "INSERT INTO temp.open_estimates VALUES (?, ?, ?, ?)",
                (lid, est["gpu_seconds"], est["storage_seconds"], est["cost_usd"]),
            )
        db.executemany("INSERT OR REPLACE INTO temp.fresh_bills VALUES (?, ?)", list((billed or {}).items()))
        # ended launches of the whole hours whose bill was just read: the rollup counts them unbilled
        self.rebilled = []
        if self.rebilled_where is not None:
            where, wargs = self.rebilled_where
            for (lid,) in db.execute(f"SELECT l.id FROM launches l WHERE 1 {where}", wargs):
                self.rebilled.extend(cost_rollup.of_launch(db, lid))

    def launches(self, limit: Optional[int] = None) -> Iterator[dict]:
        """One row per launch, oldest first, read as it is written out (limit: only the most recent ones, read
        backwards along the index). The few open launches' estimates and the bills just read are filled in here
        from memory: joining them in SQL costs two lookups for each of a million rows."""
        db = self.ledger.db
        opens = {r[0]: r[1:] for r in db.execute("SELECT id, gpu_seconds, storage_seconds, cost_usd FROM temp.open_estimates")}
        fresh = dict(db.execute("SELECT id, usd FROM temp.fresh_bills").fetchall())
        sql, args = _PLAIN.format(where=self.window), self.args
        if limit:
            sql, args = f"SELECT * FROM ({sql} ORDER BY l.created_at DESC LIMIT ?) ORDER BY 2", [*args, limit]
        cur = db.execute(sql if limit else sql + " ORDER BY l.created_at", args)
        cur.row_factory = None  # plain tuples: several times faster than sqlite3.Row
        for lid, created, ended, state, target, group, gpu, num_gpus, iid, dph, gpu_s, storage_s, cost, billed in cur:
            if cost is None:
                o_gpu, o_storage, o_cost = opens.get(lid, (None, None, None))
                gpu_s, storage_s, cost = (
                    gpu_s if gpu_s is not None else o_gpu,
                    storage_s if storage_s is not None else o_storage,
                    o_cost,
                )
            if billed is None:
                billed = fresh.get(lid)
            cost = cost or 0
            yield {
                "launch_id": lid,
                "created_at": created,
                "ended_at": ended,
                "state": state,
                "target": target,
                "wandb_group": group,
                "gpu_name": gpu,
                "num_gpus": num_gpus,
                "instance_id": iid,
                "dph_total": dph,
                "gpu_seconds": gpu_s,
                "storage_seconds": storage_s,
                "gpu_hours": (gpu_s or 0) / 3600.0 * (num_gpus or 1),
                "cost_usd": cost,
                "billed_usd": billed,
                "difference_usd": cost - billed if billed is not None else None,
            }

    def _rolled(self, dim: str, key_sql: str) -> dict:
        """key -> [launches, cost, billed, unbilled, gpu_hours, billed_cost] over the window's whole hours."""
        sums: dict = {}
        if self.lo == self.hi:
            return sums
        targets = f"AND target NOT IN ({', '.join('?' * len(self.left_out))})" if self.left_out else ""
        sql = _ROLLUP.format(key=key_sql, targets=targets)
        for key, *figures in self.ledger.db.execute(sql, [dim, self.lo, self.hi, *self.left_out]):
            sums[key] = list(figures)
        for p in self.rebilled:  # out of the rollup: read from the launches, with their fresh bill
            if p[2] == dim and p[1] not in self.left_out:
                key = p[3] if dim != "all" else time.strftime("%Y-%m-%d", time.gmtime(p[0] * 3600)) if key_sql != "''" else ""
                acc = sums.setdefault(key, [0, 0.0, 0.0, 0, 0.0, 0.0])
                for i, v in enumerate(p[4:]):
                    acc[i] -= v
        return sums

    def grouped(self, by: str, limit: Optional[int] = None) -> Iterable[dict]:
        """Rows by group, gpu, day or stage, costliest first (by group, an iterator: a key per launch, nearly);
        limit: only the costliest ones."""
        if by not in ROLLED_BY:
            sql = _GROUPED.format(base=self.base, key=_GROUP_KEYS[by]) + " ORDER BY 3 DESC"
            return self._streamed(sql + " LIMIT ?" if limit else sql, [*self.args, limit] if limit else self.args)
        if by == "stage":
            sql, params = _named(_BY_STAGE.format(base=self.rest), self.rest_args, {"now": self.now, "outside": OUTSIDE_STAGES})
        else:
            sql, params = _GROUPED.format(base=self.rest, key=_GROUP_KEYS[by]), self.rest_args
        day_key = "strftime('%Y-%m-%d', hour * 3600, 'unixepoch')"
        sums = self._rolled(ROLLED_BY[by], day_key if by == "day" else "key")
        for key, launches, cost, billed, unbilled, gpu_hours in self.ledger.db.execute(sql, params):
            acc = sums.setdefault(key, [0, 0.0, 0.0, 0, 0.0, 0.0])
            for i, v in enumerate((launches, cost, billed, unbilled, gpu_hours)):
                acc[i] += v
        rows = []
        for key, (launches, cost, billed, unbilled, gpu_hours, _) in sums.items():
            if launches <= 0:
                continue  # every launch of it was taken out of the rollup again
            rows.append(
                {
                    "key": key,
                    "launches": launches,
                    "cost_usd": cost,
                    "billed_usd": billed if unbilled == 0 else None,
                    "gpu_hours": gpu_hours,
                    "usd_per_gpu_hour": cost / gpu_hours if gpu_hours else None,
                }
            )
        return sorted(rows, key=lambda r: -r["cost_usd"])[: limit or None]

    def _streamed(self, sql: str, args: list) -> Iterator[dict]:
        cur = self.ledger.db.execute(sql, args)
        cur.row_factory = None
        for key, launches, cost, billed, unbilled, gpu_hours in cur:
            yield {
                "key": key,
                "launches": launches,
                "cost_usd": cost,
                "billed_usd": billed if unbilled == 0 else None,
                "gpu_hours": gpu_hours,
                "usd_per_gpu_hour": cost / gpu_hours if gpu_hours else None,
            }

    def totals(self) -> dict:
        n, cost, gpu_hours, billed, billed_n, est_billed = self.ledger.db.execute(
            _TOTALS.format(base=self.rest), self.rest_args
        ).fetchone()
        for launches, r_cost, r_billed, unbilled, r_gpu_hours, r_billed_cost in self._rolled("all", "''").values():
            n, cost, gpu_hours, billed = n + launches, cost + r_cost, gpu_hours + r_gpu_hours, billed + r_billed
            billed_n, est_billed = billed_n + launches - unbilled, est_billed + r_billed_cost
        return {
            "launches": n,
            "cost_usd": cost,
            "gpu_hours": gpu_hours,
            "usd_per_gpu_hour": cost / gpu_hours if gpu_hours else None,
            "billed_usd": billed,
            "billed_launches": billed_n,
            "estimate_of_billed_usd": est_billed,
        }


def _named(sql: str, positional: list, named: dict) -> tuple[str, dict]:
    """The window's `?` placeholders as named ones, so that one statement can take both."""
    out, i = [], 0
    for ch in sql:
        if ch == "?":
            out.append(f":w{i}")
            i += 1
        else:
            out.append(ch)
    return "".join(out), {**named, **{f"w{j}": v for j, v in enumerate(positional)}}
