"""The evaluation's metrics and baselines on cases whose answers are known without a model."""

import math

import torch

from ups.evaluation import baselines
from ups.evaluation.metrics import high_correlation_steps, mean_ci, paired, per_trajectory, summarise


def _trajectories(n=8, steps=5, nx=32):
    x = torch.arange(nx) / nx
    decay = torch.exp(-0.3 * torch.arange(steps + 1))[None, :, None]
    phase = torch.rand(n, 1, 1, generator=torch.Generator().manual_seed(0)) * 6.28
    return (torch.sin(2 * math.pi * x + phase) * decay).double()


def test_a_perfect_prediction_and_a_sign_flipped_one():
    traj = _trajectories()
    exact = per_trajectory(traj[:, 1:], traj)
    assert exact["nrmse"].abs().max() < 1e-12 and exact["spectrum"].abs().max() < 1e-12
    assert torch.equal(high_correlation_steps(exact["corr"]), torch.full((8,), 5.0))  # never drops: the whole horizon
    flipped = per_trajectory(-traj[:, 1:], traj)
    assert torch.allclose(flipped["nrmse"], torch.full_like(flipped["nrmse"], 2.0))
    assert torch.equal(high_correlation_steps(flipped["corr"]), torch.zeros(8))
    # the decaying truth: nRMSE of a fixed error grows, the error over the initial norm does not
    offset = per_trajectory(traj[:, 1:] + 0.01 * traj[:, :1], traj)
    assert offset["nrmse"][:, -1].mean() > 3 * offset["nrmse"][:, 0].mean()
    assert torch.allclose(offset["init_norm"], torch.full_like(offset["init_norm"], 0.01))


def test_correlation_time_counts_frames_until_the_first_drop():
    corr = torch.tensor([[0.99, 0.9, 0.7, 0.95], [0.5, 0.9, 0.9, 0.9], [0.9, 0.9, 0.9, 0.81]])
    assert high_correlation_steps(corr).tolist() == [2.0, 0.0, 4.0]


def test_intervals_are_paired_over_the_same_trajectories():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(200, generator=g, dtype=torch.float64)
    better = base - 0.01 + 0.001 * torch.randn(200, generator=g, dtype=torch.float64)
    mean, half = mean_ci(base)
    assert abs(mean - base.mean().item()) < 1e-12 and half > 0.03  # the spread between trajectories is wide
    p = paired(better, base)
    assert abs(p["diff"] + 0.01) < 0.001 and p["ci95"] < 0.0005  # the paired difference is narrow


def test_summaries_average_seeds_per_trajectory():
    traj = _trajectories()
    runs = [per_trajectory(traj[:, 1:] * (1 + s), traj) for s in (0.1, 0.3)]
    summary, per_traj = summarise(runs, dt=0.05, wall_s=0.002)
    assert summary["seeds"] == 2 and [round(v, 6) for v in summary["seed_nrmse"]] == [0.1, 0.3]
    assert abs(summary["nrmse"] - 0.2) < 1e-9 and torch.allclose(per_traj, torch.full((8,), 0.2, dtype=torch.float64))
    assert summary["high_correlation_time"] == 5 * 0.05 and summary["high_correlation_censored"] == 1.0


def test_the_solver_baseline_refines_and_coarsens_without_bias():
    spectral = {"convention": "unit", "nx": 32, "dt": 0.05, "nu": 0.01, "solver_dt": 0.0025}
    u0 = 0.2 * _trajectories(n=2, steps=0)[:, 0].float()  # mild: 32 points resolve it
    one, four = (baselines.classical(spectral, f)(u0, 3) for f in (1, 4))
    assert one.shape == four.shape == (2, 3, 32)
    assert (one - four).abs().max() < 1e-4  # a resolved smooth field: the finer grid agrees
    # refine then coarsen is the identity, for both kinds of grid
    for spectral_grid in (True, False):
        fine = baselines.refine(u0.double(), 4, spectral=spectral_grid)
        assert torch.allclose(baselines.coarsen(fine, 4, spectral=spectral_grid), u0.double(), atol=1e-6)
    assert torch.equal(baselines.persistence(u0, 3)[:, 2], u0)


def test_the_seed_table_shows_every_seed_and_the_paired_curve_comparison(tmp_path, capsys):
    import json

    from ups.evaluation import seeds

    runs = []
    for seed, (hyb, ms) in enumerate([(0.010, 0.025), (0.012, 0.027), (0.011, 0.020)]):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        ev = {
            "floor_reference": {"nrmse": 0.0004, "nrmse_ci95": 0.0, "final_nrmse": 0.0002, "wall_s_per_rollout": None},
            "muscl_128": {"nrmse": 0.0255, "nrmse_ci95": 0.002, "final_nrmse": 0.0135, "wall_s_per_rollout": 0.015},
            "hybrid": {
                "nrmse": hyb,
                "nrmse_ci95": 0.001,
                "final_nrmse": 0.008,
                "wall_s_per_rollout": ms,
                "paired_vs_cost_matched": {"against": "muscl_128..muscl_256", "diff": -0.005, "ci95": 0.001, "ratio": 0.6},
            },
        }
        if seed == 0:
            ev["only_here"] = ev["muscl_128"]
        (run / "eval.json").write_text(json.dumps(ev))
        runs.append(run)
    assert seeds.main([str(r) for r in runs]) == 0
    out = capsys.readouterr().out
    assert "| hybrid | 0.0110 | 0.0100 ± 0.0010, 0.0120 ± 0.0010, 0.0110 ± 0.0010 | 0.0080 | 25.00 |" in out
    assert out.count("(0.60×, muscl_128..muscl_256)") == 3
    assert "| only_here | 0.0255 | 0.0255 ± 0.0020 | 0.0135 | 15.00 |" in out  # one run has it: that run alone
    assert "| floor_reference | 0.0004 |" in out and "(floor)" in out
