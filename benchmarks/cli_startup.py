"""Start-up time of `vast-launch --help`, `status` and `check` against `vastai --help`, measured now.

A launcher is run dozens of times a day: its commands must not import the vastai SDK, wandb,
torch or rich tables before they need them. Each command runs N times; the median wall time
is compared with the median of `vastai --help` (the baseline) in the same run.
Usage: python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def median_seconds(cmd: list[str], runs: int, env: dict, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="vl-startup-")
    env = {**os.environ, "VAST_LAUNCH_HOME": home, "VASTAI_NO_UPDATE_CHECK": "1", "XDG_CONFIG_HOME": home}
    env.pop("VAST_API_KEY", None)
    vl, vastai = str(BIN / "vast-launch"), str(BIN / "vastai")
    median_seconds([vl, "--help"], 2, env, ROOT)  # warm the page cache for both
    median_seconds([vastai, "--help"], 2, env, ROOT)
    base = median_seconds([vastai, "--help"], a.runs, env, ROOT)
    python = median_seconds([sys.executable, "-c", "pass"], a.runs, env, ROOT)
    rows = [
        ("vast-launch --help", [vl, "--help"]),
        ("vast-launch status", [vl, "status"]),
        ("vast-launch check --config configs/burgers.yaml", [vl, "check", "--config", "configs/burgers.yaml"]),
    ]
    print(f"median of {a.runs} runs each; baseline `vastai --help` {base * 1e3:7.1f} ms (bare `python -c pass` {python * 1e3:.1f} ms)")
    for name, cmd in rows:
        t = median_seconds(cmd, a.runs, env, ROOT)
        print(f"{name:<48} {t * 1e3:7.1f} ms  {t / base:5.2f}x of vastai --help")
    t = median_seconds([vl, "--help"], a.runs, env, ROOT)
    print(f"target `vast-launch --help` <= 0.5x vastai --help: {'met' if t <= 0.5 * base else 'NOT met'} ({t / base:.2f}x)")


if __name__ == "__main__":
    main()
