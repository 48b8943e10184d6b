"""Autoregressive rollout nRMSE over the test set, with the wall time per rollout, per method."""

from __future__ import annotations

import json
import time
from typing import Callable

import torch

from ..models.denoiser import consistency_sample, heun_sample
from .common import StageEnv

METHODS = ("operator", "refiner", "distilled_1step", "distilled_2step")


@torch.no_grad()
def rollout_nrmse(
    step: Callable[[torch.Tensor], torch.Tensor], traj: torch.Tensor, steps: int, seed: int = 0
) -> tuple[float, float, list]:
    """(mean nRMSE over samples and steps, wall seconds per rollout, nRMSE per step).

    One untimed step first (first-call allocations are not the method's cost), then the sampling noise
    is seeded here: a method's number depends on its checkpoint alone, not on what was built or
    evaluated before it."""
    steps = min(steps, traj.shape[1] - 1)
    u = traj[:, 0]
    step(u)
    torch.manual_seed(seed)
    per_step = []
    if traj.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(1, steps + 1):
        u = step(u)
        true = traj[:, k]
        per_step.append(((u - true).norm(dim=-1) / true.norm(dim=-1)).mean().item())
    if traj.is_cuda:
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / traj.shape[0]
    return sum(per_step) / len(per_step), wall, per_step


def evaluate(env: StageEnv, which: tuple[str, ...]) -> dict:
    from . import consistency_distill, diffusion_residual, operator

    ev = env.section("eval")
    traj = env.data["test"][: ev["n_test"]].to(env.device)
    steps = ev["rollout_steps"]
    op = operator.load(env)
    fns: dict[str, Callable] = {"operator": op}
    if {"refiner", "distilled_1step", "distilled_2step"} & set(which):
        den, dck = diffusion_residual.load(env)
        n_steps = env.section("diffusion_residual")["sampler_steps"]
        fns["refiner"] = lambda u: (lambda o: o + dck["scale"] * heun_sample(den, u, o, n_steps, dck["sigma_min"], dck["sigma_max"]))(
            op(u)
        )
    if {"distilled_1step", "distilled_2step"} & set(which):
        cm, cck = consistency_distill.load(env)
        fns["distilled_1step"] = lambda u: (
            lambda o: o + dck["scale"] * consistency_sample(cm, u, o, [cck["sigma_max"]], cck["sigma_min"])
        )(op(u))
        fns["distilled_2step"] = lambda u: (
            lambda o: o + dck["scale"] * consistency_sample(cm, u, o, [cck["sigma_max"], cck["sigma_mid"]], cck["sigma_min"])
        )(op(u))
    results = {}
    for name in which:
        nrmse, wall, per_step = rollout_nrmse(fns[name], traj, steps)
        results[name] = {"nrmse": nrmse, "wall_s_per_rollout": wall, "nrmse_per_step": per_step}
    path = env.out / "eval.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(results)
    path.write_text(json.dumps(merged, indent=2))
    env.ctx.set_summary(
        {f"eval/{k}/nrmse": v["nrmse"] for k, v in results.items()}
        | {f"eval/{k}/wall_s": v["wall_s_per_rollout"] for k, v in results.items()}
    )
    env.ctx.log_table(
        "eval/rollout",
        ["method", "nrmse", "wall_s_per_rollout"],
        [[k, v["nrmse"], v["wall_s_per_rollout"]] for k, v in merged.items()],
    )
    for name, v in results.items():
        print(f"[ups] eval {name:<16} nRMSE {v['nrmse']:.4f}  {v['wall_s_per_rollout'] * 1e3:.2f} ms/rollout", flush=True)
    return results
