"""Rollout error metrics per trajectory, and their summaries with 95% intervals.

nRMSE is PDEBench's: ||u_pred - u|| / ||u|| per trajectory and frame. Burgers solutions decay, so ||u||
shrinks along a rollout and nRMSE grows even at a fixed absolute error; the error normalised by the
initial state's norm and the high-correlation time (PDE-Refiner: how long the prediction keeps a Pearson
correlation of at least 0.8 with the truth) do not have that bias.

The stochastic methods are also judged as ensembles, one member per sampling seed: by the CRPS (the fair
estimator, in the units of u; for a single member it is the mean absolute error, so a deterministic method's
MAE is its CRPS) and by the spread-skill ratio (the members' spread over the error of their mean, corrected for
the finite ensemble: about 1 when the spread is calibrated, under 1 when the ensemble is overconfident).
"""

from __future__ import annotations

import math

import torch

HIGH_CORRELATION = 0.8
Z95 = 1.959964


def per_trajectory(pred: torch.Tensor, traj: torch.Tensor) -> dict[str, torch.Tensor]:
    """pred [n, S, nx] against traj [n, S+1, nx] (frame 0 is the initial state)."""
    true = traj[:, 1 : pred.shape[1] + 1].double()
    pred = pred.double()
    err = pred - true
    nrmse = err.norm(dim=-1) / true.norm(dim=-1).clamp_min(1e-12)
    init_norm = err.norm(dim=-1) / traj[:, :1].double().norm(dim=-1).clamp_min(1e-12)
    pc, tc = pred - pred.mean(-1, keepdim=True), true - true.mean(-1, keepdim=True)
    corr = (pc * tc).sum(-1) / (pc.norm(dim=-1) * tc.norm(dim=-1)).clamp_min(1e-12)
    spectrum = torch.fft.rfft(err, dim=-1).abs().mean(dim=(0, 1)) / err.shape[-1]
    return {"nrmse": nrmse, "init_norm": init_norm, "corr": corr, "spectrum": spectrum, "mae": err.abs().mean(-1)}


def ensemble_scores(members: list[torch.Tensor], traj: torch.Tensor) -> dict[str, torch.Tensor]:
    """Members [n, S, nx] each, against traj [n, S+1, nx]: per trajectory and frame, the fair CRPS averaged over
    cells, the members' variance (unbiased) and the squared error of their mean, both averaged over cells; and the
    members' mean [n, S, nx] itself."""
    x = torch.stack(members).double()  # [M, n, S, nx]
    m = x.shape[0]
    true = traj[:, 1 : x.shape[2] + 1].double()
    skill = (x - true).abs().mean(0)
    if m > 1:  # E|X - X'| over distinct pairs, halved: the fair estimator's spread term
        pairs = sum((x[i] - x[j]).abs() for i in range(m) for j in range(i + 1, m))
        skill = skill - pairs / (m * (m - 1))
    var = x.var(0, unbiased=True) if m > 1 else torch.zeros_like(true)
    mean = x.mean(0)
    return {"crps": skill.mean(-1), "var": var.mean(-1), "mean_sq_err": (mean - true).pow(2).mean(-1), "members": m, "mean": mean}


def spread_skill(var: torch.Tensor, mean_sq_err: torch.Tensor, members: int) -> float:
    """sqrt((M + 1) / M * mean variance) / RMSE of the ensemble mean, over all the points given (Fortin et al. 2014)."""
    return math.sqrt((members + 1) / members * var.mean().item() / max(mean_sq_err.mean().item(), 1e-300))


def high_correlation_steps(corr: torch.Tensor) -> torch.Tensor:
    """Per trajectory: the frames before the correlation first drops under 0.8 (all of them if never)."""
    below = corr < HIGH_CORRELATION
    first = torch.where(below.any(-1), below.float().argmax(-1), torch.full_like(below[:, 0], corr.shape[-1], dtype=torch.long))
    return first.to(torch.float64)


def mean_ci(values: torch.Tensor) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% interval."""
    v = values.double().flatten()
    half = Z95 * v.std(unbiased=True).item() / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return v.mean().item(), half


def summarise(runs: list[dict[str, torch.Tensor]], dt: float, wall_s: float) -> tuple[dict, torch.Tensor]:
    """One method's summary from its runs (one per sampling seed) on the same trajectories, and its
    per-trajectory nRMSE averaged over seeds (for paired comparisons)."""
    nrmse = torch.stack([r["nrmse"] for r in runs]).mean(0)  # [n, S]
    per_traj = nrmse.mean(-1)
    corr_steps = torch.stack([high_correlation_steps(r["corr"]) for r in runs]).mean(0)
    mean, ci = mean_ci(per_traj)
    final, final_ci = mean_ci(nrmse[:, -1])
    init_norm, init_ci = mean_ci(torch.stack([r["init_norm"] for r in runs]).mean(0).mean(-1))
    hct, hct_ci = mean_ci(corr_steps * dt)
    return {
        "nrmse": mean,
        "nrmse_ci95": ci,
        "final_nrmse": final,
        "final_nrmse_ci95": final_ci,
        "error_over_initial_norm": init_norm,
        "error_over_initial_norm_ci95": init_ci,
        "high_correlation_time": hct,
        "high_correlation_time_ci95": hct_ci,
        "high_correlation_censored": float((corr_steps == nrmse.shape[-1]).double().mean()),
        "nrmse_per_step": nrmse.mean(0).tolist(),
        "error_spectrum": torch.stack([r["spectrum"] for r in runs]).mean(0).tolist(),
        "seed_nrmse": [r["nrmse"].mean().item() for r in runs],
        "wall_s_per_rollout": wall_s,
        "n_trajectories": int(nrmse.shape[0]),
        "seeds": len(runs),
    }, per_traj


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """a - b per trajectory (the same trajectories): its mean and 95% interval."""
    diff, ci = mean_ci(a - b)
    return {"diff": diff, "ci95": ci}
