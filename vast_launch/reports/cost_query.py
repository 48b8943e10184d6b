"""The cost report computed by SQLite over the frozen per-launch figures, streaming: a year of a team's
launches (a million rows) in about a second and in bounded memory.

The few launches still open have no frozen figures: their estimates are replayed from their timelines in
Python (`billing.estimate`) and handed to the query in a temporary table, as are the amounts just read
from the provider's bill and not yet settled. What each grouping means is `cost.py`'s (`stage_split`,
`stage_parts`): the queries below compute the same numbers.
"""

from __future__ import annotations

import time
from typing import Iterator, Optional

from ..billing import estimate
from ..ledger import window_clause

OUTSIDE_STAGES = "(outside stages)"
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

_GROUP_KEYS = {
    "group": "COALESCE(NULLIF(wandb_group, ''), '(no group)')",
    "gpu": "COALESCE(NULLIF(gpu_name, ''), '(no instance)')",
    "day": "strftime('%Y-%m-%d', created_at, 'unixepoch')",
}

_GROUPED = """
WITH base AS ({base})
SELECT {key} AS key, count(*) AS launches, sum(cost_usd) AS cost_usd,
       CASE WHEN sum(billed_usd IS NULL) = 0 THEN sum(billed_usd) END AS billed_usd, sum(gpu_hours) AS gpu_hours
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
SELECT name AS key, count(*) AS launches, sum(usd) AS cost_usd,
       CASE WHEN sum(billed_usd IS NULL) = 0 THEN sum(billed_usd * share) END AS billed_usd, sum(gpu_hours * share) AS gpu_hours
FROM shared GROUP BY name
"""

_TOTALS = """
WITH base AS ({base})
SELECT count(*), COALESCE(sum(cost_usd), 0), COALESCE(sum(gpu_hours), 0), COALESCE(sum(billed_usd), 0),
       count(billed_usd), COALESCE(sum(CASE WHEN billed_usd IS NOT NULL THEN cost_usd END), 0)
FROM base
"""


class CostQuery:
    """The report's launches in a window, for one command: open launches estimated once, fresh bills in."""

    def __init__(
        self,
        ledger,
        since: Optional[float],
        until: Optional[float],
        now: Optional[float] = None,
        billed: Optional[dict] = None,
        left_out: tuple = (),
    ):
        self.ledger, self.now = ledger, time.time() if now is None else now
        window, args = window_clause(since, until)
        window = window.replace("created_at", "l.created_at")
        if left_out:  # targets that rent nothing (a cluster one already has)
            window += f" AND COALESCE(l.target, '') NOT IN ({', '.join('?' * len(left_out))})"
            args = [*args, *left_out]
        self.base, self.args = _BASE.format(where=window), args
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

    def launches(self) -> Iterator[dict]:
        """One row per launch, oldest first, read as it is written out."""
        cur = self.ledger.db.execute(self.base + " ORDER BY l.created_at", self.args)
        cur.row_factory = None  # plain tuples: several times faster than sqlite3.Row
        names = LAUNCH_COLUMNS[:-1]
        for tup in cur:
            row = dict(zip(names, tup))
            row["difference_usd"] = row["cost_usd"] - row["billed_usd"] if row["billed_usd"] is not None else None
            yield row

    def grouped(self, by: str) -> list[dict]:
        if by == "stage":
            sql, args = _BY_STAGE.format(base=self.base), {"now": self.now, "outside": OUTSIDE_STAGES}
            sql, params = _named(sql, self.args, args)
        else:
            sql, params = _GROUPED.format(base=self.base, key=_GROUP_KEYS[by]), self.args
        rows = []
        for key, launches, cost, billed, gpu_hours in self.ledger.db.execute(sql, params):
            rows.append(
                {
                    "key": key,
                    "launches": launches,
                    "cost_usd": cost,
                    "billed_usd": billed,
                    "gpu_hours": gpu_hours,
                    "usd_per_gpu_hour": cost / gpu_hours if gpu_hours else None,
                }
            )
        return sorted(rows, key=lambda r: -r["cost_usd"])

    def totals(self) -> dict:
        n, cost, gpu_hours, billed, billed_n, est_billed = self.ledger.db.execute(_TOTALS.format(base=self.base), self.args).fetchone()
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
