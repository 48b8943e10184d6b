"""Baselines that learn nothing: persistence, and the classical solver run on the surrogate's own grid
(and on finer ones) from the same initial frame the surrogate sees."""

from __future__ import annotations

import math

import torch

from ..data.burgers import ETDRK4Burgers, cell_average
from ..data.finite_volume import FiniteVolumeBurgers


def persistence(u0: torch.Tensor, steps: int) -> torch.Tensor:
    return u0[:, None].expand(-1, steps, -1).clone()


def refine(u: torch.Tensor, factor: int, spectral: bool) -> torch.Tensor:
    """Frames on a grid `factor` times finer: Fourier interpolation for the spectral solver, piecewise
    constant (the cell averages kept) for the finite-volume one."""
    if factor == 1:
        return u
    if not spectral:
        return u.repeat_interleave(factor, dim=-1)
    nx = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u.double()), n=nx * factor) * factor


def coarsen(u: torch.Tensor, factor: int, spectral: bool) -> torch.Tensor:
    """Back to the surrogate's grid: Fourier truncation (the inverse of the interpolation above), or the
    average over each coarse cell."""
    if factor == 1:
        return u
    if not spectral:
        return cell_average(u, factor)
    nx = u.shape[-1] // factor
    return torch.fft.irfft(torch.fft.rfft(u)[..., : nx // 2 + 1], n=nx) / factor


def classical(data_spec: dict, factor: float):
    """A rollout function: the data's own solver at `factor` times the surrogate's grid (0.5: half as
    many cells, cheaper than the surrogate's grid), from the surrogate's initial frame moved to that grid,
    its output moved back to the surrogate's grid."""
    nx, dt = data_spec["nx"], data_spec["dt"]
    spectral = data_spec.get("convention") != "pdebench"
    finer = factor >= 1
    ratio = round(factor if finer else 1 / factor)
    grid_nx = nx * ratio if finer else nx // ratio

    def rollout(u0: torch.Tensor, steps: int) -> torch.Tensor:
        if spectral:
            solver = ETDRK4Burgers(grid_nx, data_spec["nu"], data_spec["solver_dt"], device=u0.device)
        else:
            solver = FiniteVolumeBurgers(grid_nx, data_spec["nu"] / math.pi)
        start = refine(u0.double(), ratio, spectral) if finer else coarsen(u0.double(), ratio, spectral)
        traj = solver.solve(start, dt, steps)[:, 1:]
        back = coarsen(traj, ratio, spectral) if finer else refine(traj, ratio, spectral)
        return back.to(u0.dtype)

    return rollout
