"""The evaluation's metrics and baselines on cases whose answers are known without a model."""

import math

import torch

from ups.evaluation import baselines
from ups.evaluation.metrics import ensemble_scores, high_correlation_steps, mean_ci, paired, per_trajectory, spread_skill, summarise


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


GAUSSIAN_CRPS_AT_THE_MEAN = 2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)  # sigma * (2 phi(0) - 1/sqrt(pi))


def test_the_crps_of_a_gaussian_ensemble_and_of_a_single_member():
    traj = torch.zeros(4, 3, 2000, dtype=torch.float64)  # the truth at the ensemble's mean
    g = torch.Generator().manual_seed(1)
    members = [0.5 * torch.randn(4, 2, 2000, generator=g, dtype=torch.float64) for _ in range(20)]
    crps = ensemble_scores(members, traj)["crps"].mean().item()
    assert abs(crps - 0.5 * GAUSSIAN_CRPS_AT_THE_MEAN) < 0.01 * 0.5  # the closed form, within 1 %
    one = ensemble_scores(members[:1], traj)["crps"]
    assert torch.allclose(one, members[0].abs().mean(-1))  # one member: its mean absolute error
    assert torch.allclose(one, per_trajectory(members[0], traj)["mae"])
    # two members at the truth +- a: the fair estimator's spread term cancels their error exactly
    pm = ensemble_scores([traj[:, 1:] + 0.3, traj[:, 1:] - 0.3], traj)["crps"]
    assert pm.abs().max().item() < 1e-15


def test_the_spread_skill_ratio_of_a_calibrated_and_an_overconfident_ensemble():
    g = torch.Generator().manual_seed(2)

    def ratio(member_std, truth_std, m=3):
        centre = torch.randn(50, 1, 400, generator=g, dtype=torch.float64)
        truth = torch.cat(
            [torch.zeros_like(centre), centre + truth_std * torch.randn(centre.shape, generator=g, dtype=torch.float64)], 1
        )
        members = [centre + member_std * torch.randn(centre.shape, generator=g, dtype=torch.float64) for _ in range(m)]
        e = ensemble_scores(members, truth)
        return spread_skill(e["var"], e["mean_sq_err"], e["members"])

    assert abs(ratio(1.0, 1.0) - 1.0) < 0.05  # the truth is one more draw of the same spread
    overconfident = 0.5 * math.sqrt(4 / 3) / math.sqrt(1 + 0.25 / 3)  # members at half the truth's spread: 0.555
    assert abs(ratio(0.5, 1.0) - overconfident) < 0.05
    assert abs(ratio(1.0, 0.0) - 2.0) < 0.1  # the truth at the members' centre: sqrt(M + 1) with M = 3


def test_stochastic_methods_are_scored_as_ensembles_and_deterministic_ones_by_their_mae():
    from ups.stages.evaluate import evaluate_split

    traj = _trajectories(n=16, steps=3, nx=256).float()
    noise = 0.05

    def noisy(u0, steps):  # the truth plus noise, drawn from the seed the evaluation sets before each member
        return traj[: len(u0), 1 : steps + 1] + noise * torch.randn(u0.shape[0], steps, u0.shape[-1])

    def off(u0, steps):
        return traj[: len(u0), 1 : steps + 1] + noise

    got = evaluate_split({"refiner": noisy, "hybrid": off}, traj, 3, 0.05, 4)
    ref, hyb = got["refiner"], got["hybrid"]
    assert ref["members"] == 4 and "spread_skill" not in hyb
    assert abs(hyb["crps"] - noise) < 1e-6 and hyb["crps_ci95"] < 1e-6  # a constant offset: its MAE
    assert abs(ref["crps"] - noise * GAUSSIAN_CRPS_AT_THE_MEAN) < 0.05 * noise * GAUSSIAN_CRPS_AT_THE_MEAN
    assert abs(ref["spread_skill"] - math.sqrt(5)) < 0.15  # centred on the truth: sqrt(M + 1)
    assert len(ref["spread_skill_per_step"]) == 3
    assert ref["ensemble_mean_nrmse"] < ref["nrmse"]  # averaging four noisy members halves their noise
    assert ref["crps_paired_vs_hybrid"]["diff"] < 0
    assert ref["ensemble_wall_s"] == 4 * ref["wall_s_per_rollout"]


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
