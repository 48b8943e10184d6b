"""The classical side of the cost-accuracy curve (issue: the surrogate earns its keep): a fifth-order WENO solver
beside MUSCL, and the transfers of a coarse solution to the scoring grid, on known answers."""

import math

import torch
from test_burgers_data import steep_front_errors

from ups.data.finite_volume import FiniteVolumeBurgers
from ups.data.weno import WenoBurgers
from ups.evaluation.transfer import lift_constant, lift_mc, restrict


def _smooth_exact_averages(nx: int, t: float) -> torch.Tensor:
    """Cell averages of the inviscid solution of u0 = 0.5 + 0.25 sin(2 pi x) at t, before its shock (t < 0.64):
    u = u0(x - u t) solved by Newton at 5 Gauss-Legendre points per cell."""
    nodes, weights = (
        torch.tensor([0.0, -0.5384693101056831, 0.5384693101056831, -0.9061798459386640, 0.9061798459386640], dtype=torch.float64),
        torch.tensor(
            [0.5688888888888889, 0.4786286704993665, 0.4786286704993665, 0.2369268850561891, 0.2369268850561891], dtype=torch.float64
        ),
    )
    centres = (torch.arange(nx, dtype=torch.float64) + 0.5) / nx
    x = centres[:, None] + nodes[None, :] / (2 * nx)
    u = 0.5 + 0.25 * torch.sin(2 * math.pi * x)
    for _ in range(50):
        xi = x - u * t
        g = u - 0.5 - 0.25 * torch.sin(2 * math.pi * xi)
        dg = 1 + 0.25 * 2 * math.pi * torch.cos(2 * math.pi * xi) * t
        u = u - g / dg
    return (u * weights).sum(-1) / 2


def _smooth_initial_averages(nx: int) -> torch.Tensor:
    edges = torch.arange(nx + 1, dtype=torch.float64) / nx
    return 0.5 - 0.25 * (torch.cos(2 * math.pi * edges[1:]) - torch.cos(2 * math.pi * edges[:-1])) * nx / (2 * math.pi)


def test_weno_converges_at_fifth_order_on_a_smooth_solution():
    errors = {}
    for nx in (32, 64, 128):
        u = WenoBurgers(nx, 0.0, cfl=0.1).advance(_smooth_initial_averages(nx)[None], 0.2)[0]
        errors[nx] = (u - _smooth_exact_averages(nx, 0.2)).abs().mean().item()
    orders = [math.log2(errors[32] / errors[64]), math.log2(errors[64] / errors[128])]
    muscl = (
        (FiniteVolumeBurgers(128, 0.0).advance(_smooth_initial_averages(128)[None], 0.2)[0] - _smooth_exact_averages(128, 0.2))
        .abs()
        .mean()
    )
    print(f"WENO L1 errors {errors}, observed orders {orders}; MUSCL at 128 cells {muscl.item():.2e}")
    assert min(orders) > 4.5
    assert errors[128] < muscl.item() / 100


def test_weno_follows_the_steep_front_exactly():
    """The steep case (u0 = sin(2 pi x)/2, the Basdevant front) against its exact solution as cell averages."""
    errors, traj = steep_front_errors(WenoBurgers)
    print("WENO relative L2 error at t = 0.4/pi ... 2/pi:", [f"{e:.1e}" for e in errors])
    assert max(errors) < 1e-3
    assert errors[0] < 1e-6
    assert abs(traj[-1].sum() - traj[0].sum()).item() < 1e-9  # conservative: the mean is kept to rounding


def test_lifts_keep_every_cell_average_and_the_limited_one_adds_no_extremum():
    torch.manual_seed(0)
    coarse = torch.randn(4, 64, dtype=torch.float64)
    coarse[:, 20:30] += 3.0  # a step
    for lift in (lift_constant, lift_mc):
        for factor in (2, 4, 8):
            fine = lift(coarse, factor)
            assert fine.shape == (4, 64 * factor)
            assert torch.allclose(restrict(fine, factor), coarse, atol=1e-12, rtol=0)
    fine = lift_mc(coarse, 2)
    left, right = torch.roll(coarse, 1, -1), torch.roll(coarse, -1, -1)
    lo = torch.minimum(torch.minimum(left, coarse), right).repeat_interleave(2, -1)
    hi = torch.maximum(torch.maximum(left, coarse), right).repeat_interleave(2, -1)
    assert bool(((fine >= lo - 1e-12) & (fine <= hi + 1e-12)).all())


def test_the_limited_lift_beats_the_constant_one_on_a_smooth_field():
    """The projection floor's point: lifting exact 128-cell averages of a smooth field to 256 cells costs far
    less with the limited linear reconstruction than with piecewise constants."""
    exact256 = _smooth_exact_averages(256, 0.0)
    coarse = restrict(exact256, 2)
    err_constant = (lift_constant(coarse, 2) - exact256).norm() / exact256.norm()
    err_mc = (lift_mc(coarse, 2) - exact256).norm() / exact256.norm()
    print(f"lift of exact 128-cell averages to 256: constant {err_constant.item():.2e}, MC {err_mc.item():.2e}")
    assert err_mc < err_constant / 10
