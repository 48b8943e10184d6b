"""Trajectories per second of the batched ETDRK4 Burgers solver.

Baseline measured in the same run: the same solver stepping one trajectory at a time, so the
ratio is what batching buys. Usage: python benchmarks/datagen.py [--n 256] [--nx 256] [--device cpu]
"""

import argparse
import time

import torch

from ups.data.burgers import ETDRK4Burgers, random_initial_conditions


def rate(solver, u0, dt, steps, batch):
    t0 = time.perf_counter()
    for chunk in u0.split(batch):
        solver.solve(chunk, dt, steps)
    if u0.is_cuda:
        torch.cuda.synchronize()
    return len(u0) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dt", type=float, default=0.05)
    ap.add_argument("--solver-dt", type=float, default=0.0025)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    solver = ETDRK4Burgers(a.nx, 0.01, a.solver_dt, device=a.device)
    u0 = random_initial_conditions(a.n, a.nx, seed=0, device=a.device)
    rate(solver, u0[:8], a.dt, 1, 8)  # warm-up
    baseline = rate(solver, u0[:16], a.dt, a.steps, 1)
    batched = rate(solver, u0, a.dt, a.steps, a.n)
    print(f"device {a.device}, nx {a.nx}, {a.steps} snapshots x {round(a.dt / a.solver_dt)} ETDRK4 steps each")
    print(f"one at a time : {baseline:10.1f} trajectories/s (baseline)")
    print(f"batched ({a.n}): {batched:10.1f} trajectories/s")
    print(f"ratio         : {batched / baseline:10.1f}x")


if __name__ == "__main__":
    main()
