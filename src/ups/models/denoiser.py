"""EDM-style residual denoiser (Karras et al. 2022) and its consistency-model parametrisation.

The denoiser sees a noisy scaled residual together with u(t) and op(u(t)) (PDE-Refiner's idea).
"""

from __future__ import annotations

import torch
from torch import nn

from .fno import FNO1d, fourier_embedding

SIGMA_DATA = 1.0  # residuals are scaled to unit standard deviation


class ResidualNet(nn.Module):
    """F(c_in * x, c_noise | u, op(u)): the raw network both parametrisations wrap."""

    def __init__(self, width: int = 48, modes: int = 16, layers: int = 4, emb_dim: int = 64):
        super().__init__()
        self.emb_dim = emb_dim
        self.embed = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))
        self.fno = FNO1d(3, 1, width, modes, layers, cond_dim=emb_dim)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, u: torch.Tensor, op_u: torch.Tensor) -> torch.Tensor:
        cond = self.embed(fourier_embedding(c_noise, self.emb_dim))
        return self.fno(torch.stack([x, u, op_u], dim=1), cond).squeeze(1)


class EDMDenoiser(nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)."""

    def __init__(self, net: ResidualNet, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x, sigma, u, op_u):
        sd = self.sigma_data
        s = sigma.view(-1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4, u, op_u)


class ConsistencyModel(nn.Module):
    """f(x, sigma) with the boundary condition f(x, sigma_min) = x built in (Song et al. 2023)."""

    def __init__(self, net: ResidualNet, sigma_min: float, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net, self.sigma_min, self.sigma_data = net, sigma_min, sigma_data

    def forward(self, x, sigma, u, op_u):
        sd, smin = self.sigma_data, self.sigma_min
        s = sigma.view(-1, 1)
        c_skip = sd**2 / ((s - smin) ** 2 + sd**2)
        c_out = sd * (s - smin) / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4, u, op_u)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device=None) -> torch.Tensor:
    """n noise levels from sigma_max down to sigma_min."""
    i = torch.arange(n, device=device, dtype=torch.float32)
    inv = 1 / rho
    return (sigma_max**inv + i / max(n - 1, 1) * (sigma_min**inv - sigma_max**inv)) ** rho


@torch.no_grad()
def heun_sample(
    denoiser: nn.Module,
    u: torch.Tensor,
    op_u: torch.Tensor,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM's deterministic Heun sampler (2nd order) from sigma_max to 0."""
    sigmas = torch.cat([karras_sigmas(steps, sigma_min, sigma_max, device=u.device), torch.zeros(1, device=u.device)])
    x = (
        torch.randn(u.shape, generator=generator, device=u.device) * sigmas[0]
        if generator is not None
        else torch.randn_like(u) * sigmas[0]
    )
    b = u.shape[0]
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoiser(x, s.expand(b), u, op_u)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - denoiser(x_next, s_next.expand(b), u, op_u)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d2)
        x = x_next
    return x


@torch.no_grad()
def consistency_sample(model: nn.Module, u: torch.Tensor, op_u: torch.Tensor, sigmas: list[float], sigma_min: float) -> torch.Tensor:
    """One step per entry of `sigmas` (descending): 1-step uses [sigma_max], 2-step adds a midpoint."""
    b = u.shape[0]
    x = torch.randn_like(u) * sigmas[0]
    y = model(x, torch.full((b,), sigmas[0], device=u.device), u, op_u)
    for s in sigmas[1:]:
        x = y + (s**2 - sigma_min**2) ** 0.5 * torch.randn_like(u)
        y = model(x, torch.full((b,), s, device=u.device), u, op_u)
    return y
