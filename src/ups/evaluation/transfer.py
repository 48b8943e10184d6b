"""Moving a coarse solution to the scoring grid, so that no method is charged for a bad transfer: cell averages
lifted to `factor` sub-cells each, piecewise constant or piecewise linear with the monotonized-central limiter.
Both keep every coarse cell's average exactly; the limited linear one adds no new extremum."""

from __future__ import annotations

import torch

from ..data.burgers import cell_average
from ..data.finite_volume import minmod3


def lift_constant(u: torch.Tensor, factor: int) -> torch.Tensor:
    """[..., n] -> [..., n * factor]: each sub-cell takes its cell's average."""
    return u.repeat_interleave(factor, dim=-1)


def lift_mc(u: torch.Tensor, factor: int) -> torch.Tensor:
    """[..., n] -> [..., n * factor]: each cell's MC-limited slope, sampled at its sub-cells' centres (the
    sub-cells' offsets sum to zero, so the cell's average is kept)."""
    left, right = torch.roll(u, 1, -1), torch.roll(u, -1, -1)
    slope = minmod3(2 * (u - left), 0.5 * (right - left), 2 * (right - u))  # per cell width
    offsets = (torch.arange(factor, dtype=u.dtype, device=u.device) + 0.5) / factor - 0.5
    return (u[..., None] + slope[..., None] * offsets).flatten(-2)


restrict = cell_average  # [..., n * factor] -> [..., n]: cell averages of the coarse grid
LIFTS = {"mc": lift_mc, "pc": lift_constant}
