"""Autoregressive rollouts of every method and baseline on the held-out splits, with statistics.

Each method is a rollout function (initial frames -> predicted frames). The learned ones step their
model; the baselines are persistence and the classical solver on the surrogate's grid, on one half as
fine (cheaper than the surrogate's) and on 2x and 4x finer ones. The validation split (eval_val.json)
is for tuning and for tests; the test split (eval.json) is for the report. Every method is timed after
an untimed warm-up rollout, and its sampling noise is seeded just before each of its rollouts, from
`eval.seeds` seeds: a method's numbers depend on its checkpoint alone, not on what was built or
evaluated before it.
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable

import torch

from ..evaluation import baselines
from ..evaluation.metrics import ensemble_scores, mean_ci, paired, per_trajectory, spread_skill, summarise
from ..models.denoiser import consistency_sample, heun_sample
from .common import StageEnv

SOLVER_GRIDS = {"solver_half": 0.5, "solver_1x": 1, "solver_2x": 2, "solver_4x": 4}
LEARNED = ("operator", "hybrid", "corrector_mse", "refiner_1call", "refiner", "distilled_1step", "distilled_2step")
PAIRED_WITH = ("operator", "solver_1x", "hybrid", "muscl_256", "weno_256")  # besides the cost-matched classical point
BASES = ("hybrid", "operator")  # what the refiner corrects: its CRPS is paired with theirs (their MAE)
STOCHASTIC = {"refiner", "distilled_1step", "distilled_2step"}
SUMMARY_METRICS = ("nrmse", "nrmse_ci95", "final_nrmse", "error_over_initial_norm", "high_correlation_time", "wall_s_per_rollout")
Rollout = Callable[[torch.Tensor, int], torch.Tensor]


def stepping(step: Callable[[torch.Tensor], torch.Tensor]) -> Rollout:
    @torch.no_grad()
    def rollout(u0: torch.Tensor, steps: int) -> torch.Tensor:
        u, out = u0, []
        for _ in range(steps):
            u = step(u)
            out.append(u)
        return torch.stack(out, dim=1)

    return rollout


def timed(rollout: Rollout, u0: torch.Tensor, steps: int, seed: int) -> tuple[torch.Tensor, float]:
    torch.manual_seed(seed)
    if u0.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    pred = rollout(u0, steps)
    if u0.is_cuda:
        torch.cuda.synchronize()
    return pred, (time.perf_counter() - t0) / u0.shape[0]


def rollout_functions(env: StageEnv, which: tuple[str, ...]) -> dict[str, Rollout]:
    from . import consistency_distill, diffusion_residual, hybrid, operator

    fns: dict[str, Rollout] = {}
    data_spec = env.profile["data"]
    for name, factor in SOLVER_GRIDS.items():
        if name in which:
            fns[name] = baselines.classical(data_spec, factor)
    if "persistence" in which:
        fns["persistence"] = baselines.persistence
    if "curve" in which:
        for name, (scheme, cells, lift) in baselines.curve_methods(data_spec).items():
            fns[name] = baselines.on_grid(data_spec, scheme, cells, lift)
    if "hybrid" in which and (model := hybrid.load(env)) is not None:
        fns["hybrid"] = stepping(model)
    which = tuple(m for m in which if m != "hybrid")
    if not set(LEARNED) & set(which):
        return fns
    op = operator.load(env)
    fns["operator"] = stepping(op)
    if not set(which) & (set(LEARNED) - {"operator"}):
        return fns
    den, dck = diffusion_residual.load(env)
    scale, smin, smax = dck["scale"], dck["sigma_min"], dck["sigma_max"]
    base = operator.base(env)  # the hybrid when there is one

    def corrected(correction: Callable) -> Rollout:
        """The base operator's step plus a scaled residual correction(u, base(u))."""

        def step(u):
            o = base(u)
            return o + scale * correction(u, o)

        return stepping(step)

    n_steps = env.section("diffusion_residual")["sampler_steps"]
    fns["refiner"] = corrected(lambda u, o: heun_sample(den, u, o, n_steps, smin, smax))
    # the teacher's one deterministic call, D(0, sigma_max): no diffusion sampling
    fns["refiner_1call"] = corrected(lambda u, o: den(torch.zeros_like(u), torch.full((u.shape[0],), smax, device=u.device), u, o))
    corrector = diffusion_residual.load_corrector(env)
    if corrector is not None:
        fns["corrector_mse"] = corrected(corrector)
    if {"distilled_1step", "distilled_2step"} & set(which):
        cm, cck = consistency_distill.load(env)
        for name, sigmas in (("distilled_1step", [cck["sigma_max"]]), ("distilled_2step", [cck["sigma_max"], cck["sigma_mid"]])):
            fns[name] = corrected(lambda u, o, sigmas=sigmas: consistency_sample(cm, u, o, sigmas, cck["sigma_min"]))
    keep = set(which) | {"hybrid"} | set(baselines.curve_methods(data_spec))
    return {k: v for k, v in fns.items() if k in keep}


def floors(data_spec: dict, first: int, with_reference: bool, coarsen: int = 1) -> dict[str, Callable]:
    """What no method is credited for beating, as functions of the split's trajectories: the projection floor of
    each coarse grid of the curve and of the hybrid's (the truth restricted and lifted back, MC and piecewise
    constant) and, on the test split, the reference floor (the reference scheme on twice its cells)."""
    if data_spec.get("convention") != "pdebench":
        return {}
    out: dict[str, Callable] = {}
    coarse = {c for c in baselines.CURVE_CELLS if c < data_spec["nx"]} | ({data_spec["nx"] // coarsen} if coarsen > 1 else set())
    for cells in sorted(coarse):
        for lift in ("mc", "pc"):
            out[f"floor_projection_{cells}" + ("_pc" if lift == "pc" else "")] = lambda traj, steps, cells=cells, lift=lift: (
                baselines.projection_floor(traj[:, : steps + 1], cells, lift)
            )
    if with_reference:
        out["floor_reference"] = lambda traj, steps: baselines.reference_floor(data_spec, first, traj.shape[0], steps)
    return out


def classical_frontier(results: dict) -> list[str]:
    """The classical curve's points (MC lift) that no cheaper point beats, cheapest first."""
    points = sorted(
        (k for k in results if k.split("_")[0] in baselines.SCHEMES and not k.endswith("_pc")),
        key=lambda k: results[k]["wall_s_per_rollout"],
    )
    frontier: list[str] = []
    for k in points:
        if not frontier or results[k]["nrmse"] < results[frontier[-1]]["nrmse"]:
            frontier.append(k)
    return frontier


def curve_at_equal_cost(results: dict, per_traj: dict, name: str, ms: float | None = None, score: str = "nrmse") -> dict | None:
    """`name` against the classical frontier at its own ms per rollout (or at `ms`): each trajectory's error on the
    frontier interpolated between the two points that bracket that cost (linear in log cost and log error, as the
    curve is drawn), or the nearest end point outside them (never extrapolated). A paired difference, with the
    ratio of the means. per_traj may hold another per-trajectory `score` (the CRPS) on the same frontier."""
    frontier = classical_frontier(results)
    ms = ms or results[name]["wall_s_per_rollout"]
    if not ms or not frontier:
        return None
    cost = {k: results[k]["wall_s_per_rollout"] for k in frontier}
    lo = max((k for k in frontier if cost[k] <= ms), key=cost.get, default=frontier[0])
    hi = min((k for k in frontier if cost[k] >= ms), key=cost.get, default=frontier[-1])
    w = 0.0 if lo == hi else math.log(ms / cost[lo]) / math.log(cost[hi] / cost[lo])
    curve = torch.exp((1 - w) * per_traj[lo].clamp_min(1e-12).log() + w * per_traj[hi].clamp_min(1e-12).log())
    diff = paired(per_traj[name], curve)
    return {
        "against": lo if lo == hi else f"{lo}..{hi}",
        "weight": w,
        f"curve_{score}": curve.mean().item(),
        "ratio": per_traj[name].mean().item() / curve.mean().item(),
        **diff,
    }


def ensemble_summary(members: list[torch.Tensor], traj: torch.Tensor, wall_s: float) -> tuple[dict, torch.Tensor]:
    """A stochastic method's members (one per sampling seed) as an ensemble: CRPS, spread-skill ratio (overall and
    per frame), the nRMSE of the members' mean, and what the ensemble costs (every member's rollout)."""
    e = ensemble_scores(members, traj)
    crps, crps_ci = mean_ci(e["crps"].mean(-1))
    mean_nrmse = per_trajectory(e["mean"], traj)["nrmse"].mean(-1)
    return {
        "crps": crps,
        "crps_ci95": crps_ci,
        "members": e["members"],
        "spread_skill": spread_skill(e["var"], e["mean_sq_err"], e["members"]),
        "spread_skill_per_step": [spread_skill(v, err, e["members"]) for v, err in zip(e["var"].T, e["mean_sq_err"].T)],
        "ensemble_mean_nrmse": mean_nrmse.mean().item(),
        "ensemble_wall_s": wall_s * e["members"],
    }, e["crps"].mean(-1)


def evaluate_split(
    fns: dict[str, Rollout],
    traj: torch.Tensor,
    steps: int,
    dt: float,
    seeds: int,
    oracles: dict | None = None,
    timing_runs: int = 1,
) -> dict:
    """oracles: name -> f(traj, steps), the floors: they read the truth, so they have no cost. Each method's time
    is the fastest of at least `timing_runs` timed rollouts (its sampling seeds count). Every method (not the
    floors) has a CRPS: a deterministic one's is its MAE; a stochastic one's members (its sampling seeds, two or
    more) are scored as an ensemble."""
    steps = min(steps, traj.shape[1] - 1)
    u0 = traj[:, 0]
    results, per_traj, crps = {}, {}, {}
    for name, floor in (oracles or {}).items():
        pred = floor(traj.cpu(), steps).to(traj.device)
        results[name], per_traj[name] = summarise([per_trajectory(pred, traj)], dt, None)
    for name, rollout in fns.items():
        rollout(u0[:2], 1)  # warm-up: first-call allocations are not the method's cost
        runs, walls, members = [], [], []
        for seed in range(seeds if name in STOCHASTIC else 1):
            pred, wall = timed(rollout, u0, steps, seed)
            runs.append(per_trajectory(pred, traj))
            walls.append(wall)
            members.append(pred)
        while len(walls) < timing_runs:  # the same rollout again, for its time alone
            walls.append(timed(rollout, u0, steps, len(walls))[1])
        # the fastest run: what the method costs when nothing else on the machine interferes
        results[name], per_traj[name] = summarise(runs, dt, min(walls))
        results[name]["wall_s_runs"] = walls
        if len(members) > 1:
            ens, crps[name] = ensemble_summary(members, traj, min(walls))
            results[name] |= ens
        else:
            crps[name] = runs[0]["mae"].mean(-1)
            results[name]["crps"], results[name]["crps_ci95"] = mean_ci(crps[name])
    for name in results:
        for ref in PAIRED_WITH:
            if ref in per_traj and ref != name:
                results[name][f"paired_vs_{ref}"] = paired(per_traj[name], per_traj[ref])
        if name in LEARNED and (matched := curve_at_equal_cost(results, per_traj, name)) is not None:
            results[name]["paired_vs_cost_matched"] = matched
        if "members" in results[name]:
            for ref in BASES:
                if ref in crps:
                    results[name][f"crps_paired_vs_{ref}"] = paired(crps[name], crps[ref])
            # the whole ensemble against the classical curve's MAE at the ensemble's cost
            if (matched := curve_at_equal_cost(results, crps, name, results[name]["ensemble_wall_s"], "crps")) is not None:
                results[name]["crps_vs_cost_matched"] = matched
    return results


def evaluate(env: StageEnv, which: tuple[str, ...]) -> dict:
    ev = env.section("eval")
    wanted = tuple(m for m in which if m in LEARNED or ev["baselines"])
    fns = rollout_functions(env, wanted)
    spec = env.profile["data"]
    dt = spec["dt"]
    coarsen = env.profile["hybrid"]["coarsen"] if env.profile["hybrid"]["iters"] else 1
    out = {}
    for split, filename in (("val", "eval_val.json"), ("test", "eval.json")):
        traj = env.data[split][: ev["n_test"] if split == "test" else None].to(env.device)
        first = spec["n_train"] + (spec["n_val"] if split == "test" else 0)
        oracles = floors(spec, first, split == "test" and ev["reference_floor"], coarsen) if "floors" in wanted else {}
        results = evaluate_split(fns, traj, ev["rollout_steps"], dt, ev["seeds"], oracles, ev["timing_runs"])
        path = env.out / filename
        merged = json.loads(path.read_text()) if path.exists() else {}
        for name, v in results.items():  # a method evaluated again keeps its comparisons with methods only evaluated before
            merged[name] = {**merged.get(name, {}), **v}
        path.write_text(json.dumps(merged, indent=2))
        env.ctx.set_summary(
            {f"eval/{split}/{k}/{metric}": v[metric] for k, v in results.items() for metric in SUMMARY_METRICS}
            | ({f"eval/{k}/nrmse": v["nrmse"] for k, v in results.items()} if split == "test" else {})
        )
        if split == "test":
            env.ctx.log_table(
                "eval/rollout",
                ["method", "nrmse", "nrmse_ci95", "final_nrmse", "wall_s_per_rollout"],
                [[k, v["nrmse"], v["nrmse_ci95"], v["final_nrmse"], v["wall_s_per_rollout"]] for k, v in merged.items()],
            )
            out = results
        for name, v in results.items():
            print(f"[ups] eval {split:<4} {table_line(name, v)}", flush=True)
            if "spread_skill" in v:
                print(f"[ups] eval {split:<4} {ensemble_line(name, v)}", flush=True)
    return out


def table_line(name: str, v: dict) -> str:
    """One method's line of the printed table: nRMSE, final-step nRMSE, cost, and its paired difference with the
    cost-matched classical point when it has one."""
    ms = f"{v['wall_s_per_rollout'] * 1e3:8.2f} ms/rollout" if v["wall_s_per_rollout"] is not None else "   (a floor: no cost)"
    line = f"{name:<24} nRMSE {v['nrmse']:.4f} ± {v['nrmse_ci95']:.4f}  final {v['final_nrmse']:.4f}  {ms}"
    if "paired_vs_cost_matched" in v:
        p = v["paired_vs_cost_matched"]
        curve = f"({p['against']}, {p['curve_nrmse']:.4f})"
        line += f"  vs the curve at equal cost {curve}: {p['diff']:+.4f} ± {p['ci95']:.4f}, {p['ratio']:.2f}x"
    return line


def ensemble_line(name: str, v: dict) -> str:
    """A stochastic method's ensemble: CRPS, calibration, and the CRPS against its base and the classical curve."""
    line = f"{name:<24} as an ensemble of {v['members']}: CRPS {v['crps']:.5f} ± {v['crps_ci95']:.5f}"
    line += f", spread/skill {v['spread_skill']:.2f}, mean of members nRMSE {v['ensemble_mean_nrmse']:.4f}"
    for ref in BASES:
        if (p := v.get(f"crps_paired_vs_{ref}")) is not None:
            line += f"; vs {ref}'s MAE {p['diff']:+.5f} ± {p['ci95']:.5f}"
            break
    if (p := v.get("crps_vs_cost_matched")) is not None:
        line += f"; vs the curve's MAE at the ensemble's cost ({p['against']}, {v['ensemble_wall_s'] * 1e3:.1f} ms): {p['ratio']:.2f}x"
    return line
