"""Stage 1: an FNO trained on one-step pairs u(t) -> u(t + dt); with hybrid.iters, also the hybrid operator (hybrid.py)."""

from __future__ import annotations

import torch

from ..models.fno import OperatorNet
from .common import StageEnv, load_checkpoint, maybe_compile, maybe_ddp, one_step_pairs, save_checkpoint, train_loop, unwrap

STAGE = "operator"


def build(hp: dict) -> OperatorNet:
    return OperatorNet(width=hp["width"], modes=hp["modes"], layers=hp["layers"])


def load(env: StageEnv) -> OperatorNet:
    ck = load_checkpoint(env, STAGE)
    model = build(ck["hparams"]).to(env.device)
    model.load_state_dict(ck["model"])
    return model.eval().requires_grad_(False)


def base(env: StageEnv) -> torch.nn.Module:
    """What the refiner corrects and is conditioned on: the hybrid when this stage trained one, else the FNO."""
    from . import hybrid

    model = hybrid.load(env)
    return model if model is not None else load(env)


def run(env: StageEnv) -> dict:
    hp = env.section(STAGE)
    x, y = (t.to(env.device) for t in one_step_pairs(env.data["train"]))
    model = build(hp).to(env.device)
    net = maybe_ddp(maybe_compile(model, env), env)

    def loss_fn(idx):
        pred = net(x[idx])
        return torch.mean((pred.float() - y[idx]) ** 2) / torch.mean(y[idx] ** 2)

    losses = train_loop(STAGE, net.parameters(), len(x), loss_fn, env, hp["iters"], hp["batch"], hp["lr"], state={"model": model})
    if env.rank == 0:
        save_checkpoint(env.stage_dir(STAGE) / "checkpoint.pt", model=unwrap(model).state_dict(), hparams=hp)
    result = {"loss_first": losses[0], "loss_last": losses[-1]}
    if env.profile["hybrid"]["iters"]:
        from . import hybrid

        result.update(hybrid.train(env))
    return result
