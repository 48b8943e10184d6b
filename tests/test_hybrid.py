"""The hybrid operator's properties that hold by construction (on known answers, whatever the weights), the
classical curve's transfers and floors, and `ups-train` evaluating it all on a tiny PDEBench-convention profile."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from ups.data.burgers import pdebench_initial_conditions  # noqa: E402
from ups.data.finite_volume import FiniteVolumeBurgers  # noqa: E402
from ups.evaluation import baselines  # noqa: E402
from ups.evaluation.transfer import lift_mc, restrict  # noqa: E402
from ups.models.hybrid import Hybrid, LearnedLift, conservative_update  # noqa: E402
from ups.stages.hybrid import unroll_at  # noqa: E402

NU = 0.001 / math.pi


def _states(n=4, nx=64, seed=0):
    return pdebench_initial_conditions(n, nx, seed)


def _randomise(module: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_the_correction_conserves_mass_whatever_its_weights():
    model = Hybrid(64, 2, NU, 0.05, width=8, layers=3, kernel=5).double()
    _randomise(model)
    u = _states()
    c = restrict(u, 2)
    after = model.coarse_step(c)
    assert not torch.allclose(after, model.solver.advance(c, 0.05))  # the correction does something
    assert torch.allclose(after.sum(-1), c.sum(-1), rtol=0, atol=1e-12)  # solver and correction in flux form
    flux = torch.randn(4, 32, dtype=torch.float64)
    assert torch.allclose(conservative_update(c, flux).sum(-1), c.sum(-1), rtol=0, atol=1e-12)
    frames = model(u, 6)
    assert torch.allclose(restrict(frames, 2).sum(-1), c.sum(-1)[:, None].expand(-1, 6), rtol=0, atol=1e-11)


def test_an_untrained_hybrid_is_the_coarse_solver_bit_for_bit():
    """Zero last layers: the coarse MUSCL solver's own frames, lifted by MC, identical to the last bit."""
    u = _states(nx=128)
    for learned_lift in (True, False):
        model = Hybrid(128, 4, NU, 0.05, width=8, layers=3, kernel=5, lift=learned_lift).double()
        got = model(u, 5)
        want = lift_mc(FiniteVolumeBurgers(32, NU).solve(restrict(u, 4), 0.05, 5)[:, 1:], 4)
        assert torch.equal(got, want)


def test_the_learned_lift_keeps_every_cell_average():
    lift = LearnedLift(4, width=8, layers=3, kernel=5).double()
    _randomise(lift, seed=3)
    c = restrict(_states(nx=256), 4)
    fine = lift(c)
    assert not torch.allclose(fine, lift_mc(c, 4))  # it learned something of its own
    assert torch.allclose(restrict(fine, 4), c, rtol=0, atol=1e-13)


def test_without_solver_gradients_an_earlier_frame_learns_nothing_from_a_later_one():
    u = _states(n=2)
    losses = {}
    for solver_grad in (True, False):
        model = Hybrid(64, 2, NU, 0.05, width=8, layers=2, kernel=3, solver_grad=solver_grad).double()
        _randomise(model)
        c1 = model.coarse_step(restrict(u, 2))
        c1.retain_grad()
        model.coarse_step(c1).square().sum().backward()
        losses[solver_grad] = c1.grad.abs().sum().item()
    assert losses[True] > 0 and losses[True] != losses[False]


def test_the_unroll_schedule_gives_each_length_an_equal_share():
    got = [unroll_at([1, 4, 8], it, 9) for it in range(1, 10)]
    assert got == [1, 1, 1, 4, 4, 4, 8, 8, 8]
    assert unroll_at([2], 1, 1) == 2


def test_the_reference_floor_starts_from_the_datasets_own_initial_states():
    """Regenerated on twice the cells, the initial states average to the dataset's (the same draws; the cell
    averages agree to the 8-point quadrature's error)."""
    spec = {"nx": 32, "solver_nx": 64, "n_train": 3, "n_val": 2, "n_test": 2, "seed": 5, "dt": 0.05, "nu": 0.001}
    data0 = restrict(pdebench_initial_conditions(7, 64, 5), 2)[5:7]
    floor = baselines.reference_floor(spec, 5, 2, 2)
    assert floor.shape == (2, 2, 32)
    start = restrict(pdebench_initial_conditions(7, 128, 5)[5:7], 4)
    assert (start - data0).abs().max() < 2e-3
    assert (restrict(pdebench_initial_conditions(7, 128, 6)[5:7], 4) - data0).abs().max() > 0.1  # another seed
    traj = torch.stack([data0.float(), floor[:, 0], floor[:, 1]], dim=1)
    projected = baselines.projection_floor(traj, 16)
    assert torch.allclose(restrict(projected.double(), 2), restrict(traj[:, 1:].double(), 2), atol=1e-6)


def test_the_classical_curve_on_the_scoring_grid_is_the_solver_itself():
    spec = {"convention": "pdebench", "nx": 64, "dt": 0.05, "nu": 0.001}
    u = _states(nx=64).float()
    same = baselines.on_grid(spec, "muscl", 64)(u, 3)
    assert torch.equal(same, FiniteVolumeBurgers(64, NU).solve(u, 0.05, 3, dtype=torch.float32)[:, 1:])  # in the data's precision
    in_double = FiniteVolumeBurgers(64, NU).solve(u.double(), 0.05, 3)[:, 1:]
    assert same.dtype == torch.float32 and (same.double() - in_double).abs().max() < 1e-5
    steep = pdebench_initial_conditions(8, 64, 1).float() * 3  # fronts: WENO-Z's weights must stay finite in float32
    weno32 = baselines.on_grid(spec, "weno", 64)(steep, 10)
    weno64 = baselines.on_grid(spec, "weno", 64)(steep.double(), 10)
    assert torch.isfinite(weno32).all() and ((weno32.double() - weno64).norm() / weno64.norm()).item() < 1e-3
    names = baselines.curve_methods({**spec, "nx": 256})
    assert {"muscl_64", "muscl_128_pc", "weno_512", "weno_256"} <= set(names) and "weno_256_pc" not in names
    assert baselines.curve_methods({"convention": "unit", "nx": 64}) == {}


TINY = """
name: tiny
train:
  profiles:
    tiny:
      device: cpu
      data: {convention: pdebench, nx: 64, solver_nx: 128, n_train: 16, n_val: 4, n_test: 4, n_steps: 4, dt: 0.05, nu: 0.001, seed: 0}
      operator: {modes: 8, width: 8, layers: 2, iters: 4, batch: 8}
      hybrid: {iters: 12, batch: 4, width: 8, layers: 2, kernel: 5, unroll: [2]}
      diffusion_residual: {width: 8, layers: 2, iters: 4, batch: 8, sampler_steps: 2}
      consistency_distill: {iters: 4, batch: 8, teacher_steps: 3}
      eval: {rollout_steps: 4, n_test: 4, seeds: 2}
"""


def test_ups_train_evaluates_the_hybrid_against_the_classical_curve_and_the_floors(tmp_path):
    """Every stage on a tiny PDEBench-convention profile: the hybrid, the curve, the floors, the refiner on the hybrid."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY)
    env = {**os.environ, "WANDB_MODE": "offline", "UPS_CACHE_DIR": str(tmp_path / "cache"), "WANDB_DIR": str(tmp_path)}
    argv = ["--config", str(cfg), "--profile", "tiny", "--stage", "all", "--out", str(tmp_path / "run")]
    p = subprocess.run(
        [sys.executable, "-m", "ups.train", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    for name in ("hybrid", "operator", "muscl_64", "weno_128", "muscl_256", "floor_reference", "floor_projection_32"):
        assert name in ev, name
    assert ev["floor_reference"]["wall_s_per_rollout"] is None and ev["muscl_64"]["wall_s_per_rollout"] > 0
    matched = ev["hybrid"]["paired_vs_cost_matched"]
    assert all(p in ev and p.split("_")[0] in ("muscl", "weno") for p in matched["against"].split(".."))
    assert "floor_projection_32" in json.loads((tmp_path / "run" / "eval_val.json").read_text())
    assert (tmp_path / "run" / "operator" / "hybrid.pt").exists()
    trained = torch.load(tmp_path / "run" / "operator" / "hybrid.pt", weights_only=False)
    assert trained["model"]["correction.net.2.weight"].abs().sum() > 0  # it left the coarse solver
    assert trained["hparams"]["iters"] == 12 and trained["data"]["nx"] == 64
    assert "vs the curve at equal cost (" in p.stdout and "(a floor: no cost)" in p.stdout
    # the refiner and its distillation correct the hybrid, not the FNO
    assert json.loads((tmp_path / "run" / "diffusion_residual" / "result.json").read_text())["base"] == "Hybrid"
    assert {"refiner", "distilled_1step"} <= set(ev) and "paired_vs_hybrid" in ev["refiner"]
    # judged as ensembles of their two sampling seeds: CRPS against the hybrid's MAE and the curve's at equal cost
    for name in ("refiner", "distilled_1step"):
        assert ev[name]["members"] == 2 and ev[name]["spread_skill"] > 0, name
        assert {"crps_paired_vs_hybrid", "crps_vs_cost_matched"} <= set(ev[name]), name
    assert ev["hybrid"]["crps"] > 0 and "members" not in ev["hybrid"]
    assert "refiner                  as an ensemble of 2: CRPS" in p.stdout

    # out of distribution: the same trained networks inside the solver at another viscosity
    ood = [*argv[:-4], "--stage", "operator", "--out", str(tmp_path / "run"), "--evaluate", "--set", "data.nu=0.01"]
    q = subprocess.run([sys.executable, "-m", "ups.train", *ood], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert q.returncode == 0, q.stdout[-3000:] + q.stderr[-3000:]
    at_001 = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(at_001) >= {"hybrid", "muscl_64", "floor_reference"} and "refiner" not in at_001
    assert at_001["hybrid"]["nrmse"] != ev["hybrid"]["nrmse"] and at_001["muscl_64"]["nrmse"] != ev["muscl_64"]["nrmse"]


def test_a_learned_method_is_paired_with_the_classical_frontier_interpolated_at_its_cost():
    from ups.stages.evaluate import classical_frontier, curve_at_equal_cost

    per_traj = {
        "muscl_128": torch.tensor([0.02, 0.04], dtype=torch.float64),
        "muscl_256": torch.tensor([0.005, 0.01], dtype=torch.float64),
        "weno_64": torch.tensor([0.05, 0.05], dtype=torch.float64),  # dearer than muscl_128 and worse: off the frontier
        "muscl_128_pc": torch.tensor([0.001, 0.001], dtype=torch.float64),  # the piecewise-constant lift is not the curve
        "hybrid": torch.tensor([0.005, 0.01], dtype=torch.float64),
        "cheap": torch.tensor([0.1, 0.1], dtype=torch.float64),
    }
    cost = {"muscl_128": 0.010, "muscl_256": 0.040, "weno_64": 0.030, "muscl_128_pc": 0.010, "hybrid": 0.020, "cheap": 0.001}
    results = {k: {"nrmse": v.mean().item(), "wall_s_per_rollout": cost[k]} for k, v in per_traj.items()}
    assert classical_frontier(results) == ["muscl_128", "muscl_256"]
    got = curve_at_equal_cost(results, per_traj, "hybrid")
    assert got["against"] == "muscl_128..muscl_256" and abs(got["weight"] - 0.5) < 1e-12
    assert abs(got["curve_nrmse"] - 0.015) < 1e-12  # per trajectory sqrt(0.02 * 0.005) = 0.01, sqrt(0.04 * 0.01) = 0.02
    assert abs(got["diff"] + 0.0075) < 1e-12 and abs(got["ratio"] - 0.5) < 1e-12
    below = curve_at_equal_cost(results, per_traj, "cheap")
    assert below["against"] == "muscl_128" and abs(below["curve_nrmse"] - 0.03) < 1e-12  # never extrapolated


def test_each_methods_cost_is_the_fastest_of_its_timed_rollouts():
    from ups.stages.evaluate import evaluate_split

    traj = _states(n=3, nx=32).float()[:, None].expand(-1, 4, -1).contiguous()
    calls = []

    def counted(u0, steps):
        calls.append(steps)
        return baselines.persistence(u0, steps)

    got = evaluate_split({"persistence": counted}, traj, 3, 0.05, 1, None, timing_runs=3)["persistence"]
    assert len(got["wall_s_runs"]) == 3 and got["wall_s_per_rollout"] == min(got["wall_s_runs"])
    assert calls == [1, 3, 3, 3]  # the warm-up, then three timed rollouts
    assert got["nrmse"] == 0.0  # a constant trajectory: persistence is exact
