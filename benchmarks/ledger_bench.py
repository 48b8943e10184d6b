"""What `cost_report.py` and `status_report.py` share: generated ledgers of several sizes (kept between runs
with --keep), and each command timed with this checkout's CLI and a baseline checkout's, interleaved, on the
same ledger, with each run's peak memory (the child's own maximum resident set, from wait4)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def add_arguments(ap: argparse.ArgumentParser, default_sizes: str) -> None:
    ap.add_argument("--sizes", default=default_sizes, help="launches per ledger, comma-separated")
    ap.add_argument("--baseline", required=True, help="a checkout of the code to compare with (e.g. a git worktree of main)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", default=None, help="keep the generated ledgers in this directory (reused next time)")
    ap.add_argument("--timeout", type=float, default=600, help="a run that takes longer is stopped and shown as '>N s'")


def timed(argv: list[str], env: dict, timeout: float) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one run; (inf, nan) when it ran past the timeout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return float("inf"), float("nan")
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def ledger_home(root: Path, n: int, generate) -> Path:
    from vast_launch.ledger import Ledger

    home = root / f"ledger-{n}"
    path = home / "ledger.sqlite"
    if not path.exists():
        t0 = time.perf_counter()
        print(f"generating {n} launches...", file=sys.stderr, flush=True)
        with Ledger(path) as ledger:
            generate(ledger, n)
        print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return home


def _fmt(values: list[float]) -> str:
    best = min(values)
    if best == float("inf"):
        return "  timed out"
    spread = f"±{statistics.pstdev(values):.2f}" if len(values) > 1 else ""
    return f"{best:7.2f} s {spread:<6}"


def run(args, commands: list[list[str]], generate) -> None:
    root = Path(args.keep or tempfile.mkdtemp(prefix="vl-ledger-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    new = [str(Path(sys.executable).parent / "vast-launch")]
    old = [sys.executable, str(HERE / "run_checkout.py"), str(Path(args.baseline).resolve())]
    print(f"this checkout: {new[0]}; baseline: {args.baseline}; best of {args.repeat}, spread = population stdev")
    print(f"{'launches':>9}  {'command':<34} {'baseline':>16} {'this':>16} {'ratio':>7} {'peak MB base/this':>18}")
    for n in (int(s) for s in args.sizes.split(",")):
        home = ledger_home(root, n, generate)
        env = {**os.environ, "VAST_LAUNCH_HOME": str(home), "VAST_LAUNCH_WORKSPACE": "bench"}
        env.pop("VAST_API_KEY", None)  # the open launches cannot be settled: what a CI runner without a key sees
        # This checkout may migrate the ledger to a schema the baseline refuses: it gets its own copy, migrated
        # once before timing (the migration's time printed apart).
        mine = root / f"ledger-{n}-this"
        if not (mine / "ledger.sqlite").exists():
            mine.mkdir(exist_ok=True)
            shutil.copy(home / "ledger.sqlite", mine / "ledger.sqlite")
        envs = {"old": env, "new": {**env, "VAST_LAUNCH_HOME": str(mine)}}
        wall, _ = timed([*new, "status"], envs["new"], args.timeout)
        print(f"{n:>9}  (this checkout's first open of its copy, migration included: {wall:.2f} s)", flush=True)
        for cmd in commands:
            walls: dict[str, list[float]] = {"old": [], "new": []}
            peaks: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.repeat):  # interleaved, so that a slower minute hits both
                for which, argv in (("old", old), ("new", new)):
                    wall, peak = timed([*argv, *cmd], envs[which], args.timeout)
                    walls[which].append(wall)
                    peaks[which].append(peak)
            ratio = min(walls["old"]) / min(walls["new"])
            print(
                f"{n:>9}  {' '.join(cmd):<34} {_fmt(walls['old']):>16} {_fmt(walls['new']):>16} {ratio:6.1f}x "
                f"{max(peaks['old']):8.0f}/{max(peaks['new']):<8.0f}",
                flush=True,
            )
