"""The operator stage's hybrid: a coarse finite-volume solver with a learned conservative correction and a
learned lift (models/hybrid.py), trained by relative MSE on the scoring grid, unrolled over K frames through the
solver, K following the profile's schedule (for example 1 -> 4 -> 8, equal shares of the steps)."""

from __future__ import annotations

import math

import torch

from ..models.hybrid import Hybrid
from .common import StageEnv, maybe_ddp, save_checkpoint, train_loop, unwrap

STAGE = "operator"
LOOP = "operator_hybrid"
CHECKPOINT = "hybrid.pt"


def diffusion_of(data_spec: dict) -> float:
    """The equation's diffusion coefficient: nu/pi in PDEBench's convention, nu in the unit one."""
    return data_spec["nu"] / math.pi if data_spec.get("convention") == "pdebench" else data_spec["nu"]


def build(hp: dict, data_spec: dict) -> Hybrid:
    return Hybrid(
        data_spec["nx"],
        hp["coarsen"],
        diffusion_of(data_spec),
        data_spec["dt"],
        hp["width"],
        hp["layers"],
        hp["kernel"],
        lift=hp["learned_lift"],
        solver_grad=hp["solver_grad"],
    )


def load(env: StageEnv) -> Hybrid | None:
    path = env.out / STAGE / CHECKPOINT
    if not path.exists():
        return None
    ck = torch.load(path, map_location=env.device, weights_only=False)
    spec = env.profile["data"]
    if spec["nx"] != ck["data"]["nx"]:
        raise ValueError(f"the hybrid was trained on {ck['data']['nx']} cells, the data has {spec['nx']}")
    # The solver takes the data's equation (its nu and frame step): evaluating at another nu is the
    # out-of-distribution check, with the networks as trained.
    model = build(ck["hparams"], spec).to(env.device)
    model.load_state_dict(ck["model"])
    return model.eval().requires_grad_(False)


def unroll_at(schedule: list[int], it: int, iters: int) -> int:
    """The unroll length at optimizer step `it` (1-based): the schedule's entries in equal shares of the steps."""
    return schedule[min(len(schedule) - 1, (it - 1) * len(schedule) // max(iters, 1))]


def relative_mse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean over samples and frames of ||pred - true||^2 / ||true||^2."""
    return (((pred - true) ** 2).sum(-1) / (true**2).sum(-1).clamp_min(1e-12)).mean()


def train(env: StageEnv) -> dict:
    hp, spec = env.section("hybrid"), env.profile["data"]
    traj = env.data["train"].to(env.device)
    n, frames = traj.shape[0], traj.shape[1] - 1
    schedule = [min(k, frames) for k in hp["unroll"]]
    env.ctx.define_stage_metrics(LOOP)
    model = build(hp, spec).to(env.device)
    net = maybe_ddp(model, env)
    step = {"it": None}

    def loss_fn(idx):
        if step["it"] is None:  # a resumed loop goes on with the schedule where it stopped
            step["it"] = env.summary.get(f"{LOOP}/resumed_from_step", 0)
        step["it"] += 1
        k = unroll_at(schedule, step["it"], hp["iters"])
        start = (idx // n) % (frames - k + 1)
        i = idx % n
        u0 = traj[i, start]
        true = torch.stack([traj[i, start + j] for j in range(1, k + 1)], dim=1)
        pred = net(u0, k)
        return relative_mse(pred.float(), true)

    losses = train_loop(LOOP, net.parameters(), n * frames, loss_fn, env, hp["iters"], hp["batch"], hp["lr"], state={"model": model})
    if env.rank == 0:
        save_checkpoint(env.stage_dir(STAGE) / CHECKPOINT, model=unwrap(model).state_dict(), hparams=hp, data=spec)
    return {"hybrid_loss_first": losses[0], "hybrid_loss_last": losses[-1]}
