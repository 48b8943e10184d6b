"""Stage 2: an EDM denoiser of the scaled residual u(t+dt) - op(u(t)), conditioned on u and op(u); op is the
hybrid when the operator stage trained one, else the FNO (`operator.base`)."""

from __future__ import annotations

import torch

from ..models.denoiser import EDMDenoiser, ResidualNet
from . import operator
from .common import StageEnv, load_checkpoint, maybe_ddp, one_step_pairs, save_checkpoint, train_loop, unwrap

STAGE = "diffusion_residual"
P_MEAN, P_STD = -1.2, 1.2


def build(hp: dict, modes: int) -> ResidualNet:
    return ResidualNet(width=hp["width"], modes=modes, layers=hp["layers"])


@torch.no_grad()
def residual_data(env: StageEnv, op) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = (t.to(env.device) for t in one_step_pairs(env.data["train"]))
    op_x = torch.cat([op(chunk) for chunk in x.split(4096)])
    return x, op_x, y - op_x


def load(env: StageEnv) -> tuple[EDMDenoiser, dict]:
    ck = load_checkpoint(env, STAGE)
    net = build(ck["hparams"], ck["modes"]).to(env.device)
    net.load_state_dict(ck["model"])
    return EDMDenoiser(net).eval().requires_grad_(False), ck


class Corrector(torch.nn.Module):
    """The ablation: the refiner's network as a deterministic residual predictor, trained by MSE. If it
    matches the refiner, the gain comes from the network and its conditioning, not from diffusion."""

    def __init__(self, net: ResidualNet):
        super().__init__()
        self.net = net

    def forward(self, u, op_u):
        zeros = torch.zeros(u.shape[0], device=u.device)
        return self.net(torch.zeros_like(u), zeros, u, op_u)


def load_corrector(env: StageEnv) -> Corrector | None:
    ck = load_checkpoint(env, STAGE)
    if ck.get("corrector") is None:
        return None
    net = build(ck["hparams"], ck["modes"]).to(env.device)
    net.load_state_dict(ck["corrector"])
    return Corrector(net).eval().requires_grad_(False)


def train_corrector(env: StageEnv, hp: dict, modes: int, x, op_x, r) -> Corrector:
    env.ctx.define_stage_metrics(f"{STAGE}_mse")  # its own step metric, beside the denoiser's
    corrector = Corrector(build(hp, modes).to(env.device))
    net = maybe_ddp(corrector, env)

    def loss_fn(idx):
        return torch.mean((net(x[idx], op_x[idx]).float() - r[idx]) ** 2)

    train_loop(
        f"{STAGE}_mse", net.parameters(), len(x), loss_fn, env, hp["mse_iters"], hp["batch"], hp["lr"], state={"model": corrector}
    )
    return corrector


def run(env: StageEnv) -> dict:
    hp = env.section(STAGE)
    op = operator.base(env)
    x, op_x, resid = residual_data(env, op)
    scale = resid.std().item()
    r = resid / scale
    modes = env.section("operator")["modes"]
    net = build(hp, modes).to(env.device)
    den = maybe_ddp(EDMDenoiser(net), env)
    gen = torch.Generator(device=env.device).manual_seed(env.seed(1234))

    def loss_fn(idx):
        b = len(idx)
        sigma = torch.exp(P_MEAN + P_STD * torch.randn(b, device=env.device, generator=gen))
        noisy = r[idx] + sigma[:, None] * torch.randn(r[idx].shape, device=env.device, generator=gen)
        weight = (sigma**2 + 1) / sigma**2
        pred = den(noisy, sigma, x[idx], op_x[idx]).float()
        return torch.mean(weight[:, None] * (pred - r[idx]) ** 2)

    losses = train_loop(
        STAGE, den.parameters(), len(x), loss_fn, env, hp["iters"], hp["batch"], hp["lr"], state={"model": net, "noise": gen}
    )
    corrector = train_corrector(env, hp, modes, x, op_x, r) if hp["mse_iters"] else None
    if env.rank == 0:
        save_checkpoint(
            env.stage_dir(STAGE) / "checkpoint.pt",
            model=unwrap(den).net.state_dict(),
            hparams=hp,
            modes=modes,
            scale=scale,
            sigma_min=hp["sigma_min"],
            sigma_max=hp["sigma_max"],
            corrector=unwrap(corrector).net.state_dict() if corrector is not None else None,
        )
    return {"loss_first": losses[0], "loss_last": losses[-1], "residual_scale": scale, "base": type(op).__name__}
