"""A fifth-order WENO finite-volume solver for u_t + (u^2/2)_x = d u_xx on the periodic unit interval: the
strongest classical point of the evaluation's cost-accuracy curve beside MUSCL (finite_volume.py).

WENO-Z reconstruction (Borges, Carmona, Costa & Don 2008: the Jiang-Shu stencils and linear weights, with
weights that keep fifth order at critical points), Godunov's exact flux for the convex u^2/2, a central viscous
flux, and SSP-RK3 (Shu & Osher) in time, with the same step limits and output times as the MUSCL solver.
"""

from __future__ import annotations

import torch

from .finite_volume import FiniteVolumeBurgers

# WENO-Z's epsilon only guards a division by zero; in float32 (tau / eps)^2 must stay finite.
EPSILON = {torch.float64: 1e-40, torch.float32: 1e-12}


def _weno_z(um2: torch.Tensor, um1: torch.Tensor, u0: torch.Tensor, up1: torch.Tensor, up2: torch.Tensor) -> torch.Tensor:
    """The value at the right face of the centre cell u0, from the cells two to its left to two to its right."""
    q0 = (2 * um2 - 7 * um1 + 11 * u0) / 6
    q1 = (-um1 + 5 * u0 + 2 * up1) / 6
    q2 = (2 * u0 + 5 * up1 - up2) / 6
    b0 = 13 / 12 * (um2 - 2 * um1 + u0) ** 2 + 0.25 * (um2 - 4 * um1 + 3 * u0) ** 2
    b1 = 13 / 12 * (um1 - 2 * u0 + up1) ** 2 + 0.25 * (um1 - up1) ** 2
    b2 = 13 / 12 * (u0 - 2 * up1 + up2) ** 2 + 0.25 * (3 * u0 - 4 * up1 + up2) ** 2
    tau = (b0 - b2).abs()
    eps = EPSILON.get(u0.dtype, 1e-12)
    a0 = 0.1 * (1 + (tau / (b0 + eps)) ** 2)
    a1 = 0.6 * (1 + (tau / (b1 + eps)) ** 2)
    a2 = 0.3 * (1 + (tau / (b2 + eps)) ** 2)
    return (a0 * q0 + a1 * q1 + a2 * q2) / (a0 + a1 + a2)


class WenoBurgers(FiniteVolumeBurgers):
    """Cell averages u[..., nx] of the periodic unit interval; `cfl` scales both step limits (the tests take
    smaller steps to measure the spatial order alone)."""

    def __init__(self, nx: int, diffusion: float, cfl: float = 1.0):
        super().__init__(nx, diffusion)
        self.cfl = cfl

    def _rhs(self, u: torch.Tensor) -> torch.Tensor:
        r = [torch.roll(u, k, -1) for k in (2, 1, 0, -1, -2, -3)]  # r[j] = u[i - 2 + j]
        u_minus = _weno_z(r[0], r[1], r[2], r[3], r[4])  # just left of the face i+1/2
        u_plus = _weno_z(r[5], r[4], r[3], r[2], r[1])  # just right of it: the mirrored stencil of cell i+1
        flux = torch.maximum(0.5 * torch.clamp(u_minus, min=0) ** 2, 0.5 * torch.clamp(u_plus, max=0) ** 2)
        flux = flux - self.diffusion * (r[3] - r[2]) / self.dx
        return -(flux - torch.roll(flux, 1, -1)) / self.dx

    def max_step(self, u: torch.Tensor) -> float:
        return self.cfl * super().max_step(u)

    def advance(self, u: torch.Tensor, duration: float) -> torch.Tensor:
        t = 0.0
        while duration - t > 1e-12:
            dt = min(self.max_step(u), duration - t)
            u1 = u + dt * self._rhs(u)
            u2 = 0.75 * u + 0.25 * (u1 + dt * self._rhs(u1))
            u = u / 3 + 2 / 3 * (u2 + dt * self._rhs(u2))
            t += dt
        return u
