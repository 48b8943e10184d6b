"""Wall time of `vast-launch cost --format json` over a ledger of 100,000 generated launches.

Baseline measured in the same run: the same report with every launch's estimate replayed from
its event timeline (what the report would cost without the estimates frozen at finish), and the
CLI's bare start-up (`vast-launch --version`), so the ratio shows what the report itself adds.
Usage: python benchmarks/cost_report.py [--launches 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vast_launch.billing import estimate
from vast_launch.reports.cost import build_report

GPUS = [("RTX 4090", 0.35), ("A100 SXM4", 1.10), ("H100 SXM", 2.20), ("L40S", 0.80)]
STAGES = ["operator", "diffusion_residual", "consistency_distill"]


def generate_ledger(ledger, n: int, seed: int = 0, now: float | None = None, active: int = 20) -> None:
    """n launches over the last 30 days: loading, three stages, sometimes a stopped period, teardown."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    launches, events, stages = [], [], []
    for i in range(n):
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
    cols = [
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
    launches.sort(key=lambda r: r["created_at"])  # a real ledger grows in creation order
    with ledger.transaction():
        ledger.db.executemany(
            f"INSERT INTO launches ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r.get(c) for c in cols) for r in launches],
        )
        ledger.db.executemany("INSERT INTO events (launch_id, t, state, detail) VALUES (?, ?, ?, ?)", events)
        ledger.db.executemany("INSERT INTO stages (launch_id, name, start, end, rc) VALUES (?, ?, ?, ?, ?)", stages)


def timed_cli(args: list[str], env: dict) -> tuple[float, str]:
    exe = Path(sys.executable).parent / "vast-launch"
    t0 = time.perf_counter()
    p = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, p.stdout


def replayed_report_seconds(ledger) -> float:
    """The baseline: every estimate replayed from the events table."""
    t0 = time.perf_counter()
    events: dict[str, list] = {}
    for lid, t, state, detail in ledger.db.execute("SELECT launch_id, t, state, detail FROM events ORDER BY t, id"):
        events.setdefault(lid, []).append({"t": t, "state": state, "detail": detail})
    total = 0.0
    for row in ledger.launches():
        total += estimate(row, events.get(row["id"], []))["cost_usd"]
    json.dumps(total)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--launches", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", default=None, help="keep the generated ledger in this directory")
    a = ap.parse_args()
    from vast_launch.ledger import Ledger

    home = Path(a.keep or tempfile.mkdtemp(prefix="vl-cost-bench-"))
    env = {**os.environ, "VAST_LAUNCH_HOME": str(home)}
    env.pop("VAST_API_KEY", None)
    os.environ["VAST_LAUNCH_HOME"] = str(home)
    t0 = time.perf_counter()
    with Ledger() as ledger:
        if ledger.db.execute("SELECT count(*) FROM launches").fetchone()[0] == 0:
            generate_ledger(ledger, a.launches)
        gen_s = time.perf_counter() - t0
        n = ledger.db.execute("SELECT count(*) FROM launches").fetchone()[0]
        n_events = ledger.db.execute("SELECT count(*) FROM events").fetchone()[0]
        baseline = replayed_report_seconds(ledger)
        in_process = min(_timed(lambda: build_report(ledger, "launch", since=None)) for _ in range(a.repeat))
    startup = min(timed_cli(["--version"], env)[0] for _ in range(a.repeat))
    walls = []
    for _ in range(a.repeat):
        wall, out = timed_cli(["cost", "--format", "json"], env)
        walls.append(wall)
    rows = len(json.loads(out)["rows"])
    best = min(walls)
    print(f"ledger: {n} launches, {n_events} events (generated in {gen_s:.1f} s) at {home}")
    print(f"`vast-launch --version` start-up          : {startup:6.3f} s")
    print(f"`vast-launch cost --format json` wall      : {best:6.3f} s (best of {a.repeat}; {rows} rows)")
    print(f"report in-process (frozen estimates)       : {in_process:6.3f} s")
    print(f"baseline: replay every timeline in-process : {baseline:6.3f} s")
    print(f"ratio baseline / frozen (in-process)       : {baseline / in_process:6.1f}x")
    print(f"under 1 s of wall time                     : {'yes' if best < 1.0 else 'NO'}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
