import math

import torch

from ups.data.burgers import DataSpec, ETDRK4Burgers, cole_hopf, grid, load_or_generate


def test_etdrk4_matches_cole_hopf_exact_solution():
    """nu = 0.01/pi, 256 points, to t = 1; a steep front (phi nearly vanishes) makes it a real test."""
    nu, nx = 0.01 / math.pi, 256
    a, phases = [0.99, 0.005], [0.3, 1.0]
    x = grid(nx)
    traj = ETDRK4Burgers(nx, nu, 1e-3).solve(cole_hopf(x, 0.0, nu, a, phases)[None], 0.1, 10)[0]
    errors = []
    for i in range(11):
        exact = cole_hopf(x, 0.1 * i, nu, a, phases)
        errors.append(((traj[i] - exact).norm() / exact.norm()).item())
    print(f"max relative L2 error over t in [0, 1]: {max(errors):.2e}")
    assert max(errors) <= 1e-4
    assert traj[0].abs().max() > 0.2  # not a trivially small solution


def test_dataset_cached_by_parameter_hash(tmp_path):
    spec = DataSpec(nx=32, solver_nx=64, n_train=4, n_test=2, n_steps=3, dt=0.05)
    first, cached1 = load_or_generate(spec, cache=tmp_path)
    second, cached2 = load_or_generate(spec, cache=tmp_path)
    assert (cached1, cached2) == (False, True)
    assert torch.equal(first["train"], second["train"])
    other, cached3 = load_or_generate(DataSpec(**{**spec.__dict__, "seed": 1}), cache=tmp_path)
    assert not cached3 and not torch.equal(other["train"], first["train"])
    assert len(list(tmp_path.glob("burgers-*.pt"))) == 2
