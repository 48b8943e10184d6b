"""Baselines that learn nothing: persistence, and the classical solver run on the surrogate's own grid
(and on finer ones) from the same initial frame the surrogate sees."""

from __future__ import annotations

import math

import torch

from ..data.burgers import ETDRK4Burgers, cell_average, pdebench_initial_conditions
from ..data.finite_volume import FiniteVolumeBurgers
from ..data.weno import WenoBurgers
from .transfer import LIFTS, lift_constant, restrict

CURVE_CELLS = (64, 128, 256, 512)  # the classical cost-accuracy curve's grids
SCHEMES = {"muscl": FiniteVolumeBurgers, "weno": WenoBurgers}


def persistence(u0: torch.Tensor, steps: int) -> torch.Tensor:
    return u0[:, None].expand(-1, steps, -1).clone()


def refine(u: torch.Tensor, factor: int, spectral: bool) -> torch.Tensor:
    """Frames on a grid `factor` times finer: Fourier interpolation for the spectral solver, piecewise
    constant (the cell averages kept) for the finite-volume one."""
    if factor == 1:
        return u
    if not spectral:
        return lift_constant(u, factor)
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


def curve_methods(data_spec: dict) -> dict[str, tuple[str, int, str]]:
    """The classical curve's methods (finite-volume data only): name -> (scheme, cells, lift). Coarse grids are
    lifted to the scoring grid with the MC-limited linear reconstruction, and also (`_pc`) piecewise constant."""
    if data_spec.get("convention") != "pdebench":
        return {}
    out = {}
    for scheme in SCHEMES:
        for cells in CURVE_CELLS:
            out[f"{scheme}_{cells}"] = (scheme, cells, "mc")
            if cells < data_spec["nx"]:
                out[f"{scheme}_{cells}_pc"] = (scheme, cells, "pc")
    return out


def on_grid(data_spec: dict, scheme: str, cells: int, lift: str = "mc"):
    """A rollout function: `scheme` on `cells` cells from the surrogate's initial frame moved there (restricted,
    or lifted by MC), its frames moved back (restricted, or lifted by `lift`). Computed in the frames' own precision,
    as the learned methods are: in float32 MUSCL on 256 cells runs 1.4x faster than in float64 on this machine and
    its nRMSE moves by 4e-7."""
    nx = data_spec["nx"]
    solver = SCHEMES[scheme](cells, data_spec["nu"] / math.pi)
    up = LIFTS[lift]

    def rollout(u0: torch.Tensor, steps: int) -> torch.Tensor:
        start = restrict(u0, nx // cells) if cells < nx else up(u0, cells // nx) if cells > nx else u0
        traj = solver.solve(start, data_spec["dt"], steps, dtype=u0.dtype)[:, 1:]
        back = up(traj, nx // cells) if cells < nx else restrict(traj, cells // nx) if cells > nx else traj
        return back.to(u0.dtype)

    return rollout


def projection_floor(traj: torch.Tensor, cells: int, lift: str = "mc") -> torch.Tensor:
    """The truth's frames restricted to `cells` cells and lifted back: what any method on that grid loses to the
    transfer alone, [n, S, nx] for frames 1..S."""
    nx = traj.shape[-1]
    up = LIFTS[lift]
    return up(restrict(traj[:, 1:].double(), nx // cells), nx // cells).to(traj.dtype)


def reference_floor(data_spec: dict, first: int, count: int, steps: int) -> torch.Tensor:
    """The reference scheme on twice the reference's cells from the same initial states (regenerated: their
    draws do not depend on the grid), averaged to the scoring grid: how far the reference itself is from
    converged. Trajectories first..first+count of the dataset, frames 1..steps."""
    n_all = data_spec["n_train"] + data_spec["n_val"] + data_spec["n_test"]
    cells = 2 * data_spec["solver_nx"]
    u0 = pdebench_initial_conditions(n_all, cells, data_spec["seed"])[first : first + count]
    traj = FiniteVolumeBurgers(cells, data_spec["nu"] / math.pi).solve(u0, data_spec["dt"], steps)[:, 1:]
    return restrict(traj, cells // data_spec["nx"]).float()
