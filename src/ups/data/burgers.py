"""1D viscous Burgers u_t + (u^2/2)_x = nu u_xx on the periodic domain [0, 1).

Batched ETDRK4 pseudo-spectral solver (Cox & Matthews, with Kassam & Trefethen's contour
integrals for the coefficients) and 2/3-rule dealiasing; exact Cole-Hopf solutions to check it; random
initial conditions, ours and PDEBench's; datasets (train, validation, test) cached on disk by a hash of
their parameters. The `pdebench` convention uses the finite-volume solver of finite_volume.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from .finite_volume import FiniteVolumeBurgers


def grid(nx: int, device=None, dtype=torch.float64) -> torch.Tensor:
    return torch.arange(nx, device=device, dtype=dtype) / nx


class ETDRK4Burgers:
    """Solver for a fixed (nx, nu, dt); integrates a batch of states at once."""

    def __init__(self, nx: int, nu: float, dt: float, device=None, contour_points: int = 32):
        self.nx, self.nu, self.dt = nx, nu, dt
        dtype = torch.float64
        k = torch.fft.rfftfreq(nx, d=1.0 / nx).to(device=device, dtype=dtype)  # integer wavenumbers
        self.ik = 1j * 2 * math.pi * k
        L = -nu * (2 * math.pi * k) ** 2
        self.E, self.E2 = torch.exp(dt * L), torch.exp(dt * L / 2)
        r = torch.exp(1j * math.pi * (torch.arange(1, contour_points + 1, dtype=dtype, device=device) - 0.5) / contour_points)
        LR = dt * L[:, None] + r[None, :]
        self.Q = dt * torch.real(torch.mean((torch.exp(LR / 2) - 1) / LR, dim=1))
        self.f1 = dt * torch.real(torch.mean((-4 - LR + torch.exp(LR) * (4 - 3 * LR + LR**2)) / LR**3, dim=1))
        self.f2 = dt * torch.real(torch.mean((2 + LR + torch.exp(LR) * (-2 + LR)) / LR**3, dim=1))
        self.f3 = dt * torch.real(torch.mean((-4 - 3 * LR - LR**2 + torch.exp(LR) * (4 - LR)) / LR**3, dim=1))
        self.dealias = (k < (2.0 / 3.0) * (nx // 2)).to(dtype)

    def nonlinear(self, v: torch.Tensor) -> torch.Tensor:
        """-(u^2/2)_x in Fourier space, dealiased by the 2/3 rule."""
        u = torch.fft.irfft(v * self.dealias, n=self.nx)
        return -0.5 * self.ik * torch.fft.rfft(u * u) * self.dealias

    def step(self, v: torch.Tensor) -> torch.Tensor:
        Nv = self.nonlinear(v)
        a = self.E2 * v + self.Q * Nv
        Na = self.nonlinear(a)
        b = self.E2 * v + self.Q * Na
        Nb = self.nonlinear(b)
        c = self.E2 * a + self.Q * (2 * Nb - Nv)
        Nc = self.nonlinear(c)
        return self.E * v + Nv * self.f1 + 2 * (Na + Nb) * self.f2 + Nc * self.f3

    def solve(self, u0: torch.Tensor, t_out: float, n_out: int) -> torch.Tensor:
        """Snapshots at t = 0, t_out, ..., n_out*t_out: shape [batch, n_out + 1, nx]."""
        substeps = max(1, round(t_out / self.dt))
        if abs(substeps * self.dt - t_out) > 1e-9 * max(1.0, t_out):
            raise ValueError(f"snapshot interval {t_out} is not a multiple of the solver step {self.dt}")
        v = torch.fft.rfft(u0.to(torch.float64))
        out = [u0.to(torch.float64)]
        for _ in range(n_out):
            for _ in range(substeps):
                v = self.step(v)
            out.append(torch.fft.irfft(v, n=self.nx))
        return torch.stack(out, dim=1)


def cole_hopf(x: torch.Tensor, t: float, nu: float, a: list[float], phases: list[float]) -> torch.Tensor:
    """Exact Burgers solution u = -2 nu phi_x / phi, with phi an exact heat-equation solution.

    phi(x, t) = 1 + sum_n a_n exp(-nu (2 pi n)^2 t) cos(2 pi n x + phase_n), n = 1..len(a).
    """
    phi = torch.ones_like(x)
    phi_x = torch.zeros_like(x)
    for n, (an, ph) in enumerate(zip(a, phases), start=1):
        w = 2 * math.pi * n
        decay = math.exp(-nu * w * w * t)
        phi = phi + an * decay * torch.cos(w * x + ph)
        phi_x = phi_x - an * decay * w * torch.sin(w * x + ph)
    return -2 * nu * phi_x / phi


def random_initial_conditions(
    n: int, nx: int, seed: int, max_wavenumber: int = 4, n_modes: int = 2, amplitude: tuple[float, float] = (0.2, 1.0), device=None
) -> torch.Tensor:
    """PDEBench-like: sums of sines with random wavenumbers, amplitudes and phases."""
    g = torch.Generator().manual_seed(seed)
    x = grid(nx)
    k = torch.randint(1, max_wavenumber + 1, (n, n_modes), generator=g).to(torch.float64)
    amp = torch.empty(n, n_modes, dtype=torch.float64).uniform_(*amplitude, generator=g) / n_modes
    phase = torch.rand(n, n_modes, generator=g, dtype=torch.float64) * 2 * math.pi
    u0 = (amp[:, :, None] * torch.sin(2 * math.pi * k[:, :, None] * x[None, None, :] + phase[:, :, None])).sum(1)
    return u0.to(device) if device is not None else u0


def pdebench_initial_conditions(
    n: int,
    nx: int,
    seed: int,
    k_tot: int = 4,
    n_choices: int = 2,
    p_abs: float = 0.1,
    p_window: float = 0.1,
    device=None,
) -> torch.Tensor:
    """Cell averages on nx cells of PDEBench's Burgers initial conditions (its `init_multi`, k_tot = 4):
    sines of up to `n_choices` wavenumbers drawn from 1..k_tot with amplitudes in [0, 1) and random
    phases; each wavenumber not drawn still adds its amplitude times the sine of its phase, a constant,
    which is PDEBench's mean offset. Then, independently: the absolute value with probability p_abs, a sign
    flip with probability 0.5, and with probability p_window a tanh window (edges in [0.1, 0.45] and
    [0.55, 0.9], width 0.01). PDEBench uses 2 pi n / (x_last - x_first) as wavenumbers, which is not quite
    periodic on its grid; these are exactly periodic."""
    g = torch.Generator().manual_seed(seed)
    fine = 8  # sub-cells per cell for the cell average
    x = (torch.arange(nx * fine, dtype=torch.float64) + 0.5) / (nx * fine)
    drawn = torch.randint(0, k_tot, (n, n_choices), generator=g)
    chosen = torch.zeros(n, k_tot, dtype=torch.float64).scatter_(1, drawn, 1.0)
    k = 2 * math.pi * torch.arange(1, k_tot + 1, dtype=torch.float64) * chosen  # 0 where not drawn
    amp = torch.rand(n, k_tot, 1, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, k_tot, 1, generator=g, dtype=torch.float64)
    u = (amp * torch.sin(k[:, :, None] * x[None, None, :] + phase)).sum(1)
    u = torch.where(torch.rand(n, 1, generator=g) < p_abs, u.abs(), u)
    u = u * torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0).to(u)
    windowed = torch.rand(n, 1, generator=g) < p_window
    lo = 0.1 + 0.35 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    hi = 0.55 + 0.35 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    window = 0.5 * (torch.tanh((x - lo) / 0.01) - torch.tanh((x - hi) / 0.01))
    u = cell_average(torch.where(windowed, u * window, u), fine)
    return u.to(device) if device is not None else u


def cell_average(u: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return u
    return u.reshape(*u.shape[:-1], u.shape[-1] // factor, factor).mean(-1)


@dataclass(frozen=True)
class DataSpec:
    """Which dataset: every field is given (the defaults and their meaning are `ups.profile.Data`'s)."""

    convention: str
    nx: int
    solver_nx: int
    n_train: int
    n_val: int
    n_test: int
    n_steps: int
    dt: float
    nu: float
    seed: int
    solver_dt: float

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("UPS_CACHE_DIR") or Path.home() / ".cache" / "ups")


def generate(spec: DataSpec, device=None) -> dict:
    if spec.solver_nx % spec.nx:
        raise ValueError(f"data.solver_nx ({spec.solver_nx}) must be a multiple of data.nx ({spec.nx})")
    n = spec.n_train + spec.n_val + spec.n_test
    if spec.convention == "pdebench":
        u0 = pdebench_initial_conditions(n, spec.solver_nx, spec.seed, device=device)
        solver = FiniteVolumeBurgers(spec.solver_nx, spec.nu / math.pi)
    else:
        u0 = random_initial_conditions(n, spec.solver_nx, spec.seed, device=device)
        solver = ETDRK4Burgers(spec.solver_nx, spec.nu, spec.solver_dt, device=device)
    traj = solver.solve(u0, spec.dt, spec.n_steps)
    traj = cell_average(traj, spec.solver_nx // spec.nx).float().cpu()
    if not torch.isfinite(traj).all():
        raise FloatingPointError("solver diverged: lower data.solver_dt or raise data.solver_nx")
    a, b = spec.n_train, spec.n_train + spec.n_val
    return {"train": traj[:a], "val": traj[a:b], "test": traj[b:], "spec": asdict(spec)}


def load_or_generate(spec: DataSpec, device=None, cache: Optional[Path] = None) -> tuple[dict, bool]:
    """(dataset, came_from_cache)."""
    path = (cache or cache_dir()) / f"burgers-{spec.key()}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True), True
        except Exception:
            path.unlink(missing_ok=True)
    data = generate(spec, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return data, False
