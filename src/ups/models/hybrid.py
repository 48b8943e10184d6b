"""The hybrid operator: the reference finite-volume solver on a coarse grid, a learned conservative correction
after each frame's substeps, and a learned lift of the coarse cell averages to the scoring grid.

After Bar-Sinai et al. 2019 and Kochkov et al. 2021 (a learned correction inside a solver, in flux form) and
Um et al. 2020 / List et al. 2022 (trained unrolled through the solver). Two properties hold by construction,
whatever the weights: the correction is a difference of face fluxes, so it moves mass between cells and never
creates any; the lift adds zero-mean sub-cell offsets to an MC-limited linear reconstruction, so every coarse cell
keeps its average. Both networks' last layers start at zero: an untrained hybrid is the coarse solver, bit for
bit, lifted with the MC reconstruction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.finite_volume import FiniteVolumeBurgers
from ..evaluation.transfer import lift_mc, restrict


def _periodic_cnn(inputs: int, outputs: int, width: int, layers: int, kernel: int) -> nn.Sequential:
    """`layers` periodic convolutions: a stencil of layers * (kernel // 2) cells either side."""
    mods: list[nn.Module] = []
    channels = inputs
    for _ in range(layers - 1):
        mods += [nn.Conv1d(channels, width, kernel, padding=kernel // 2, padding_mode="circular"), nn.GELU()]
        channels = width
    last = nn.Conv1d(channels, outputs, kernel, padding=kernel // 2, padding_mode="circular")
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods, last)


def face_features(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """[b, n] states -> [b, 4, n]: at index i, the two cells beside face i+1/2, before and after the solver."""
    return torch.stack([before, torch.roll(before, -1, -1), after, torch.roll(after, -1, -1)], dim=1)


def conservative_update(u: torch.Tensor, flux: torch.Tensor) -> torch.Tensor:
    """u_i - (g_{i+1/2} - g_{i-1/2}), with flux[..., i] = g_{i+1/2} on the periodic grid: the total is kept."""
    return u - (flux - torch.roll(flux, 1, -1))


class FluxCorrection(nn.Module):
    """A face flux correction (in units of cell averages per frame) from the cells around each face."""

    def __init__(self, width: int, layers: int, kernel: int):
        super().__init__()
        self.net = _periodic_cnn(4, 1, width, layers, kernel)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return self.net(face_features(before, after)).squeeze(1)


class LearnedLift(nn.Module):
    """Coarse cell averages [b, n] -> [b, n * factor] sub-cell averages whose mean over each cell is that cell's."""

    def __init__(self, factor: int, width: int, layers: int, kernel: int):
        super().__init__()
        self.factor = factor
        self.net = _periodic_cnn(1, factor, width, layers, kernel)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        offsets = self.net(u[:, None]).transpose(1, 2)  # [b, n, factor]
        offsets = offsets - offsets.mean(-1, keepdim=True)
        return lift_mc(u, self.factor) + offsets.flatten(-2)


class Hybrid(nn.Module):
    """One frame of the scoring grid to the next: restrict to the coarse grid, solve, correct, lift.

    Restricting a lifted state gives the coarse state back (the lift keeps cell averages), so stepping on the
    scoring grid is a coarse rollout lifted at every frame. solver_grad False cuts the gradient through the
    solver (the ablation: each correction learns from its own frame's error only)."""

    def __init__(
        self,
        nx: int,
        factor: int,
        diffusion: float,
        dt: float,
        width: int,
        layers: int,
        kernel: int,
        lift: bool = True,
        solver_grad: bool = True,
    ):
        super().__init__()
        if nx % factor:
            raise ValueError(f"hybrid.coarsen ({factor}) must divide data.nx ({nx})")
        self.factor, self.dt, self.solver_grad = factor, dt, solver_grad
        self.solver = FiniteVolumeBurgers(nx // factor, diffusion)
        self.correction = FluxCorrection(width, layers, kernel)
        self.lift = LearnedLift(factor, width, layers, kernel) if lift else None

    def coarse_step(self, c: torch.Tensor) -> torch.Tensor:
        with torch.autocast(c.device.type, enabled=False):  # the solver in the state's precision, never bf16
            solved = self.solver.advance(c if self.solver_grad else c.detach(), self.dt)
        return conservative_update(solved, self.correction(c, solved).to(solved.dtype))

    def up(self, c: torch.Tensor) -> torch.Tensor:
        return self.lift(c) if self.lift is not None else lift_mc(c, self.factor)

    def forward(self, u: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """The next frame [b, nx]; with `frames`, that many [b, frames, nx], the coarse state carried between
        them (not restricted again)."""
        c, out = restrict(u, self.factor), []
        for _ in range(frames or 1):
            c = self.coarse_step(c)
            out.append(self.up(c).to(u.dtype))
        return out[0] if frames is None else torch.stack(out, dim=1)
