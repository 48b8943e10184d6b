"""One table over training seeds: `python -m ups.evaluation.seeds RUN_DIR... [--split test|val]`.

Each run directory is one `ups-train` run of the same profile with another `train_seed` (its eval.json or
eval_val.json). Per method: the mean nRMSE over seeds with every seed's value, the final-step nRMSE, the median
ms per rollout, and the paired difference with the classical curve at equal cost (each seed's, with its 95%
interval over trajectories). A classical method or a floor learns nothing, so its seeds agree to the last digit
(only its timing differs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load(runs: list[Path], split: str) -> list[dict]:
    name = "eval.json" if split == "test" else "eval_val.json"
    return [json.loads((run / name).read_text()) for run in runs]


def rows(evals: list[dict]) -> list[dict]:
    """One row per method, in the order first met; a method some runs left out (the reference floor is the same
    for every seed) averages the runs that have it."""
    out = []
    for method in dict.fromkeys(m for ev in evals for m in ev):
        got = [ev[method] for ev in evals if method in ev]
        walls = [g["wall_s_per_rollout"] for g in got if g.get("wall_s_per_rollout") is not None]
        matched = [g.get("paired_vs_cost_matched") for g in got]
        out.append(
            {
                "method": method,
                "nrmse": statistics.fmean(g["nrmse"] for g in got),
                "seeds": [g["nrmse"] for g in got],
                "ci95": [g["nrmse_ci95"] for g in got],
                "final_nrmse": statistics.fmean(g["final_nrmse"] for g in got),
                "ms": statistics.median(walls) * 1e3 if walls else None,
                "vs_curve": matched if all(matched) else None,
            }
        )
    return out


def markdown(table: list[dict]) -> str:
    lines = [
        "| method | nRMSE, mean of seeds | each seed (± 95% over trajectories) | final-step | ms per rollout | "
        "paired with the classical curve at equal cost, each seed |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in table:
        seeds = ", ".join(f"{v:.4f} ± {c:.4f}" for v, c in zip(r["seeds"], r["ci95"]))
        ms = f"{r['ms']:.2f}" if r["ms"] is not None else "(floor)"
        vs = "; ".join(f"{m['diff']:+.4f} ± {m['ci95']:.4f} ({m['ratio']:.2f}×, {m['against']})" for m in r["vs_curve"] or [])
        lines.append(f"| {r['method']} | {r['nrmse']:.4f} | {seeds} | {r['final_nrmse']:.4f} | {ms} | {vs} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ups.evaluation.seeds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="+", type=Path, help="run directories of one profile, one per training seed")
    p.add_argument("--split", choices=("test", "val"), default="test")
    args = p.parse_args(argv)
    print(markdown(rows(load(args.runs, args.split))), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
