"""Fourier Neural Operator in 1D, with optional FiLM conditioning on a noise embedding."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class SpectralConv1d(nn.Module):
    def __init__(self, channels: int, modes: int):
        super().__init__()
        self.modes = modes
        scale = 1.0 / (channels * channels)
        self.weight = nn.Parameter(scale * torch.randn(channels, channels, modes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        xf = torch.fft.rfft(x.float())
        m = min(self.modes, xf.shape[-1])
        w = torch.view_as_complex(self.weight[..., :m, :].contiguous())
        out = torch.zeros_like(xf)
        out[..., :m] = torch.einsum("bim,iom->bom", xf[..., :m], w)
        return torch.fft.irfft(out, n=n).to(x.dtype)


class FNOBlock(nn.Module):
    def __init__(self, width: int, modes: int, cond_dim: int = 0):
        super().__init__()
        self.spectral = SpectralConv1d(width, modes)
        self.pointwise = nn.Conv1d(width, width, 1)
        self.film = nn.Linear(cond_dim, 2 * width) if cond_dim else None

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.spectral(x) + self.pointwise(x)
        if self.film is not None and cond is not None:
            scale, shift = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return x + nn.functional.gelu(h)


class FNO1d(nn.Module):
    """Input [batch, in_channels, nx] -> output [batch, out_channels, nx]; the grid is appended."""

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, width: int = 32, modes: int = 16, layers: int = 4, cond_dim: int = 0
    ):
        super().__init__()
        self.lift = nn.Conv1d(in_channels + 1, width, 1)
        self.blocks = nn.ModuleList(FNOBlock(width, modes, cond_dim) for _ in range(layers))
        self.project = nn.Sequential(nn.Conv1d(width, 2 * width, 1), nn.GELU(), nn.Conv1d(2 * width, out_channels, 1))

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, _, n = x.shape
        g = torch.linspace(0, 1, n + 1, device=x.device, dtype=x.dtype)[:-1].expand(b, 1, n)
        h = self.lift(torch.cat([x, g], dim=1))
        for block in self.blocks:
            h = block(h, cond)
        return self.project(h)


class OperatorNet(nn.Module):
    """u(t) -> u(t + dt) as u + FNO(u)."""

    def __init__(self, width: int = 32, modes: int = 16, layers: int = 4):
        super().__init__()
        self.fno = FNO1d(1, 1, width, modes, layers)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.fno(u.unsqueeze(1)).squeeze(1)


def fourier_embedding(x: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None, :] * 100
    return torch.cat([args.sin(), args.cos()], dim=1)
