"""`vast-launch cost` in every --by (and format) on generated ledgers of 10k, 100k and 1M launches: wall time
and peak memory of this checkout's CLI against a baseline checkout's (an earlier commit) on the same ledger,
interleaved, in the same run (`ledger_bench.py` runs them; `status_report.py` does the same for status).
Usage: python benchmarks/cost_report.py --baseline CHECKOUT [--sizes 10000,100000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import ledger_bench

from vast_launch import cost_rollup
from vast_launch.billing import estimate

GPUS = [("RTX 4090", 0.35), ("A100 SXM4", 1.10), ("H100 SXM", 2.20), ("L40S", 0.80)]
STAGES = ["operator", "diffusion_residual", "consistency_distill"]


def generate_ledger(ledger, n: int, seed: int = 0, now: float | None = None, active: int = 20) -> None:
    """n launches over the last 30 days: loading, three stages, sometimes a stopped period, teardown."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    launches, events, stages = [], [], []
    for i in range(n):
        if len(launches) == CHUNK:  # a million launches in bounded memory
            _insert(ledger, launches, events, stages)
            launches, events, stages = [], [], []
        lid = f"gen-{i:06d}"
        t = now - rng.uniform(3600, 29 * 86400)
        gpu, dph_base = rng.choice(GPUS)
        num_gpus = rng.choice([1, 1, 1, 2, 4, 8])
        dph_base *= num_gpus
        storage_dph = rng.uniform(0.005, 0.05)
        ev = [
            (t, "searching", None),
            (t + 2, "creating", json.dumps({"offer_id": 1000 + i, "dph_base": dph_base, "storage_dph": storage_dph})),
            (t + 3, "created", json.dumps({"instance_id": 100000 + i})),
        ]
        t += 3 + rng.uniform(20, 300)
        ev.append((t, "running", None))
        for name in STAGES:
            dur = rng.uniform(60, 3 * 3600)
            stages.append((lid, name, t + 5, t + 5 + dur, 0))
            t += 5 + dur
            if rng.random() < 0.05:
                ev.append((t, "stopped", None))
                t += rng.uniform(60, 7200)
                ev.append((t, "running", None))
        is_active = i >= n - active
        if not is_active:
            t += rng.uniform(5, 60)
            ev += [(t, "destroying", None), (t + 1, "gone", None), (t + 1, "destroyed", "completed")]
        row = {
            "id": lid,
            "created_at": ev[0][0],
            "updated_at": t,
            "name": "burgers",
            "target": "vast",
            "gpu_name": gpu,
            "num_gpus": num_gpus,
            "dph_total": dph_base + storage_dph,
            "dph_base": dph_base,
            "storage_dph": storage_dph,
            "instance_id": 100000 + i,
            "wandb_project": "ups-burgers",
            "wandb_group": f"sweep-{i // 50:04d}" if rng.random() < 0.5 else lid,
            "state": "running" if is_active else "destroyed",
            "ended_at": None if is_active else t + 1,
            "end_reason": None if is_active else "completed",
        }
        if not is_active:
            est = estimate(row, [{"t": a, "state": s, "detail": d} for a, s, d in ev])
            row.update(gpu_seconds=est["gpu_seconds"], storage_seconds=est["storage_seconds"], cost_usd=est["cost_usd"])
            if rng.random() < 0.9:
                row["billed_usd"] = est["cost_usd"] * rng.uniform(0.99, 1.01)
        launches.append(row)
        events += [(lid, a, s, d) for a, s, d in ev]
    _insert(ledger, launches, events, stages)
    with ledger.transaction():  # written around the ledger's own writes: its cost rollup is built once here
        cost_rollup.rebuild(ledger.db)


CHUNK = 50_000
COLUMNS = [
    "id",
    "created_at",
    "updated_at",
    "name",
    "target",
    "gpu_name",
    "num_gpus",
    "dph_total",
    "dph_base",
    "storage_dph",
    "instance_id",
    "wandb_project",
    "wandb_group",
    "state",
    "ended_at",
    "end_reason",
    "gpu_seconds",
    "storage_seconds",
    "cost_usd",
    "billed_usd",
]


def _insert(ledger, launches: list, events: list, stages: list) -> None:
    launches.sort(key=lambda r: r["created_at"])  # a real ledger grows in creation order
    with ledger.transaction():
        ledger.db.executemany(
            f"INSERT INTO launches ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            [tuple(r.get(c) for c in COLUMNS) for r in launches],
        )
        ledger.db.executemany("INSERT INTO events (launch_id, t, state, detail) VALUES (?, ?, ?, ?)", events)
        ledger.db.executemany("INSERT INTO stages (launch_id, name, start, end, rc) VALUES (?, ?, ?, ?, ?)", stages)


COMMANDS = [["cost", "--by", by, "--format", "json"] for by in ("launch", "group", "stage", "gpu", "day")] + [
    ["cost", "--by", "launch", "--format", "csv"],
    ["cost", "--by", "launch"],
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ledger_bench.add_arguments(ap, default_sizes="10000,100000,1000000")
    ledger_bench.run(ap.parse_args(), COMMANDS, generate_ledger)


if __name__ == "__main__":
    main()
