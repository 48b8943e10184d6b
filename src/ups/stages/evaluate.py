"""Autoregressive rollouts of every method and baseline on the held-out splits, with statistics.

Each method is a rollout function (initial frames -> predicted frames). The learned ones step their
model; the baselines are persistence and the classical solver on the surrogate's grid, on one half as
fine (cheaper than the surrogate's) and on 2x and 4x finer ones. The validation split (eval_val.json)
is for tuning and for tests; the test split (eval.json) is for the report. Every method is timed after
an untimed warm-up rollout, and its sampling noise is seeded just before each of its rollouts, from
`eval.seeds` seeds: a method's numbers depend on its checkpoint alone, not on what was built or
evaluated before it.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import torch

from ..evaluation import baselines
from ..evaluation.metrics import paired, per_trajectory, summarise
from ..models.denoiser import consistency_sample, heun_sample
from .common import StageEnv

BASELINES = ("persistence", "solver_half", "solver_1x", "solver_2x", "solver_4x")
SOLVER_GRIDS = {"solver_half": 0.5, "solver_1x": 1, "solver_2x": 2, "solver_4x": 4}
LEARNED = ("operator", "corrector_mse", "refiner_1call", "refiner", "distilled_1step", "distilled_2step")
STOCHASTIC = {"refiner", "distilled_1step", "distilled_2step"}
SUMMARY_METRICS = ("nrmse", "nrmse_ci95", "final_nrmse", "error_over_initial_norm", "high_correlation_time", "wall_s_per_rollout")
Rollout = Callable[[torch.Tensor, int], torch.Tensor]


def stepping(step: Callable[[torch.Tensor], torch.Tensor]) -> Rollout:
    @torch.no_grad()
    def rollout(u0: torch.Tensor, steps: int) -> torch.Tensor:
        u, out = u0, []
        for _ in range(steps):
            u = step(u)
            out.append(u)
        return torch.stack(out, dim=1)

    return rollout


def timed(rollout: Rollout, u0: torch.Tensor, steps: int, seed: int) -> tuple[torch.Tensor, float]:
    torch.manual_seed(seed)
    if u0.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    pred = rollout(u0, steps)
    if u0.is_cuda:
        torch.cuda.synchronize()
    return pred, (time.perf_counter() - t0) / u0.shape[0]


def rollout_functions(env: StageEnv, which: tuple[str, ...]) -> dict[str, Rollout]:
    from . import consistency_distill, diffusion_residual, operator

    fns: dict[str, Rollout] = {}
    data_spec = env.profile["data"]
    for name, factor in SOLVER_GRIDS.items():
        if name in which:
            fns[name] = baselines.classical(data_spec, factor)
    if "persistence" in which:
        fns["persistence"] = baselines.persistence
    if not set(LEARNED) & set(which):
        return fns
    op = operator.load(env)
    fns["operator"] = stepping(op)
    if not set(which) & (set(LEARNED) - {"operator"}):
        return {k: v for k, v in fns.items() if k in which}
    den, dck = diffusion_residual.load(env)
    scale, smin, smax = dck["scale"], dck["sigma_min"], dck["sigma_max"]

    def corrected(correction: Callable) -> Rollout:
        """The operator's step plus a scaled residual correction(u, op(u))."""

        def step(u):
            o = op(u)
            return o + scale * correction(u, o)

        return stepping(step)

    n_steps = env.section("diffusion_residual")["sampler_steps"]
    fns["refiner"] = corrected(lambda u, o: heun_sample(den, u, o, n_steps, smin, smax))
    # the teacher's one deterministic call, D(0, sigma_max): no diffusion sampling
    fns["refiner_1call"] = corrected(lambda u, o: den(torch.zeros_like(u), torch.full((u.shape[0],), smax, device=u.device), u, o))
    corrector = diffusion_residual.load_corrector(env)
    if corrector is not None:
        fns["corrector_mse"] = corrected(corrector)
    if {"distilled_1step", "distilled_2step"} & set(which):
        cm, cck = consistency_distill.load(env)
        for name, sigmas in (("distilled_1step", [cck["sigma_max"]]), ("distilled_2step", [cck["sigma_max"], cck["sigma_mid"]])):
            fns[name] = corrected(lambda u, o, sigmas=sigmas: consistency_sample(cm, u, o, sigmas, cck["sigma_min"]))
    return {k: v for k, v in fns.items() if k in which}


def evaluate_split(fns: dict[str, Rollout], traj: torch.Tensor, steps: int, dt: float, seeds: int) -> dict:
    steps = min(steps, traj.shape[1] - 1)
    u0 = traj[:, 0]
    results, per_traj = {}, {}
    for name, rollout in fns.items():
        rollout(u0[:2], 1)  # warm-up: first-call allocations are not the method's cost
        runs, walls = [], []
        for seed in range(seeds if name in STOCHASTIC else 1):
            pred, wall = timed(rollout, u0, steps, seed)
            runs.append(per_trajectory(pred, traj))
            walls.append(wall)
        results[name], per_traj[name] = summarise(runs, dt, sorted(walls)[len(walls) // 2])
    for name in results:
        for ref in ("operator", "solver_1x"):
            if ref in per_traj and ref != name:
                results[name][f"paired_vs_{ref}"] = paired(per_traj[name], per_traj[ref])
    return results


def evaluate(env: StageEnv, which: tuple[str, ...]) -> dict:
    ev = env.section("eval")
    wanted = tuple(m for m in which if m in LEARNED or ev["baselines"])
    fns = rollout_functions(env, wanted)
    dt = env.profile["data"]["dt"]
    out = {}
    for split, filename in (("val", "eval_val.json"), ("test", "eval.json")):
        traj = env.data[split][: ev["n_test"] if split == "test" else None].to(env.device)
        results = evaluate_split(fns, traj, ev["rollout_steps"], dt, ev["seeds"])
        path = env.out / filename
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged.update(results)
        path.write_text(json.dumps(merged, indent=2))
        env.ctx.set_summary(
            {f"eval/{split}/{k}/{metric}": v[metric] for k, v in results.items() for metric in SUMMARY_METRICS}
            | ({f"eval/{k}/nrmse": v["nrmse"] for k, v in results.items()} if split == "test" else {})
        )
        if split == "test":
            env.ctx.log_table(
                "eval/rollout",
                ["method", "nrmse", "nrmse_ci95", "final_nrmse", "wall_s_per_rollout"],
                [[k, v["nrmse"], v["nrmse_ci95"], v["final_nrmse"], v["wall_s_per_rollout"]] for k, v in merged.items()],
            )
            out = results
        for name, v in results.items():
            print(
                f"[ups] eval {split:<4} {name:<16} nRMSE {v['nrmse']:.4f} ± {v['nrmse_ci95']:.4f}  final {v['final_nrmse']:.4f}  "
                f"{v['wall_s_per_rollout'] * 1e3:.2f} ms/rollout",
                flush=True,
            )
    return out
