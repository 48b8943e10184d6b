"""Stage 3: consistency distillation of the residual denoiser into a one/two-step sampler.

Karras sigma schedule, one Heun step of the teacher between adjacent levels, an EMA target,
and the boundary-condition parametrisation f(x, sigma_min) = x.
"""

from __future__ import annotations

import copy

import torch

from ..models.denoiser import ConsistencyModel, karras_sigmas
from . import diffusion_residual, operator
from .common import StageEnv, load_checkpoint, maybe_ddp, save_checkpoint, train_loop, unwrap

STAGE = "consistency_distill"


def load(env: StageEnv) -> tuple[ConsistencyModel, dict]:
    ck = load_checkpoint(env, STAGE)
    teacher, tck = diffusion_residual.load(env)
    net = copy.deepcopy(teacher.net)
    net.load_state_dict(ck["model"])
    return ConsistencyModel(net, ck["sigma_min"]).eval().requires_grad_(False), ck


def run(env: StageEnv) -> dict:
    hp = env.section(STAGE)
    op = operator.base(env)
    teacher, tck = diffusion_residual.load(env)
    x, op_x, resid = diffusion_residual.residual_data(env, op)
    r = resid / tck["scale"]
    smin, smax = tck["sigma_min"], tck["sigma_max"]
    sigmas = karras_sigmas(hp["teacher_steps"], smin, smax, device=env.device)
    student = ConsistencyModel(copy.deepcopy(teacher.net).requires_grad_(True), smin).to(env.device)
    target = copy.deepcopy(student).requires_grad_(False)
    model = maybe_ddp(student, env)
    mu = hp["ema"]
    gen = torch.Generator(device=env.device).manual_seed(env.seed(4321))

    def loss_fn(idx):
        b = len(idx)
        i = torch.randint(0, len(sigmas) - 1, (b,), device=env.device, generator=gen)
        s_hi, s_lo = sigmas[i], sigmas[i + 1]
        x_hi = r[idx] + s_hi[:, None] * torch.randn(r[idx].shape, device=env.device, generator=gen)
        u, ou = x[idx], op_x[idx]
        with torch.no_grad():  # one Heun step of the teacher's probability-flow ODE
            d = (x_hi - teacher(x_hi, s_hi, u, ou)) / s_hi[:, None]
            x_eul = x_hi + (s_lo - s_hi)[:, None] * d
            d2 = (x_eul - teacher(x_eul, s_lo, u, ou)) / s_lo[:, None]
            x_lo = x_hi + (s_lo - s_hi)[:, None] * 0.5 * (d + d2)
            y_target = target(x_lo, s_lo, u, ou)
        return torch.mean((model(x_hi, s_hi, u, ou).float() - y_target) ** 2)

    @torch.no_grad()
    def ema_update():
        for pt, ps in zip(target.parameters(), unwrap(model).parameters()):
            pt.mul_(mu).add_(ps.detach(), alpha=1 - mu)

    state = {"student": student, "target": target, "noise": gen}
    losses = train_loop(
        STAGE, model.parameters(), len(x), loss_fn, env, hp["iters"], hp["batch"], hp["lr"], after_step=ema_update, state=state
    )
    if env.rank == 0:
        save_checkpoint(
            env.stage_dir(STAGE) / "checkpoint.pt",
            model=target.net.state_dict(),
            hparams=hp,
            sigma_min=smin,
            sigma_max=smax,
            sigma_mid=hp["sigma_mid"],
        )
    return {"loss_first": losses[0], "loss_last": losses[-1]}
