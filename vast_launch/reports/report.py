"""A launch, after the fact: timeline, cost, hardware, the trainer's evaluation, curves.

Everything comes from the ledger and the outputs kept on this machine (under the state dir for local
launches, or a directory given with --out); nothing is looked up again. The curves are whatever the
stages logged; the evaluation table appears when the trainer wrote eval.json.
"""

from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ..billing import estimate
from ..errors import UserError
from .curves import collect as collect_curves

EVAL_ORDER = (
    "persistence",
    "solver_half",
    "solver_1x",
    "solver_2x",
    "solver_4x",
    "operator",
    "hybrid",
    "corrector_mse",
    "refiner_1call",
    "refiner",
    "distilled_1step",
    "distilled_2step",
)


def eval_methods(evaluation: dict) -> list[str]:
    return [m for m in EVAL_ORDER if m in evaluation] + [m for m in evaluation if m not in EVAL_ORDER]


def _pm(v: dict, key: str) -> str:
    ci = v.get(f"{key}_ci95")
    return f"{v[key]:.4f}" + (f" ± {ci:.4f}" if ci is not None else "")


def _utc(t: Optional[float]) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def timeline(row: dict, events: list[dict], stages: list[dict]) -> list[dict]:
    """Phases in order: queued (search/create), loading, each stage, teardown."""
    marks: list[tuple[float, str]] = [(row["created_at"], "queued (search, create)")]
    for ev in events:
        if ev["state"] in ("loading", "running", "stopped", "exited", "destroying", "teardown"):
            label = {
                "loading": "loading (image, onstart)",
                "running": "running (clone, setup)",
                "destroying": "teardown",
                "teardown": "teardown",
            }.get(ev["state"], ev["state"])
            marks.append((ev["t"], label))
    for st in stages:
        marks.append((st["start"], f"stage {st['name']}" + ("" if st["rc"] in (0, None) else f" (exit {st['rc']})")))
        if st["end"] is not None:
            marks.append((st["end"], "between stages (results, W&B sync)"))
    marks.sort()
    end = row.get("ended_at") or marks[-1][0]
    out = []
    for i, (t, label) in enumerate(marks):
        until = marks[i + 1][0] if i + 1 < len(marks) else end
        if out and out[-1]["phase"] == label:
            out[-1]["seconds"] += until - t
            continue
        out.append({"phase": label, "start": t, "seconds": max(until - t, 0.0)})
    # a stage that ends as the next starts leaves a gap of nothing: not worth a row
    return [ph for ph in out if not (ph["phase"].startswith("between stages") and ph["seconds"] < 0.05)]


LOG_TAIL_LINES = 20


def build(ledger, row: dict, out_dir: Optional[Path], log_lines: Optional[list[str]] = None) -> dict:
    events = ledger.events(row["id"])
    stages = ledger.stages(row["id"])
    est = estimate(row, events)
    cost = row["cost_usd"] if row.get("cost_usd") is not None else est["cost_usd"]
    ev_path = Path(out_dir) / "eval.json" if out_dir else None
    evaluation = json.loads(ev_path.read_text()) if ev_path and ev_path.exists() else {}
    curves, curves_from = collect_curves(out_dir)
    project = row.get("wandb_project") or ""
    group = row.get("wandb_group") or ""
    return {
        "launch_id": row["id"],
        "state": row["state"],
        "end_reason": row.get("end_reason"),
        "commit": row.get("commit_sha"),
        "target": row.get("target"),
        "profile": row.get("profile"),
        "hardware": {
            "gpu_name": row.get("gpu_name"),
            "num_gpus": row.get("num_gpus"),
            "instance_id": row.get("instance_id"),
            "machine_id": row.get("machine_id"),
            "dph_total": row.get("dph_total"),
        },
        "cost": {
            "estimate_usd": cost,
            "billed_usd": row.get("billed_usd"),
            "gpu_hours": est["gpu_hours"],
            "gpu_seconds": est["gpu_seconds"],
            "storage_seconds": est["storage_seconds"],
        },
        "timeline": timeline(row, events, stages),
        "evaluation": evaluation,
        "wandb": {
            "project": project,
            "group": group,
            "url": f"https://wandb.ai/{project}/groups/{group}"
            if "/" in project and group
            else (f"https://wandb.ai/<entity>/{project}/groups/{group}" if project and group else None),
        },
        "curves": [c.as_dict() for c in curves],
        "curves_from": curves_from,
        "out_dir": str(out_dir) if out_dir else None,
        "log_tail": list(log_lines or [])[-LOG_TAIL_LINES:],
    }


def to_markdown(data: dict, plot_path: Optional[Path] = None) -> str:
    hw, cost = data["hardware"], data["cost"]
    lines = [
        f"# Launch {data['launch_id']}",
        "",
        f"- state: **{data['state']}**, {data['end_reason'] or ''}",
        f"- commit `{(data['commit'] or '')[:12]}`, target {data['target']}"
        + (f", profile {data['profile']}" if data["profile"] else ""),
        f"- hardware: {hw['gpu_name'] or '-'} x{hw['num_gpus'] or '-'} (instance {hw['instance_id']}, "
        f"machine {hw['machine_id']}), ${hw['dph_total'] or 0:.3f}/h",
        f"- cost: estimate ${cost['estimate_usd']:.4f}"
        + (f", billed ${cost['billed_usd']:.4f}" if cost["billed_usd"] is not None else ", billed: not known")
        + f", {cost['gpu_hours']:.4f} GPU h",
        f"- W&B: project {data['wandb']['project'] or '-'}, group {data['wandb']['group'] or '-'}"
        + (f" ({data['wandb']['url']})" if data["wandb"]["url"] else ""),
        "",
        "## Timeline",
        "",
        "| phase | start (UTC) | duration |",
        "| --- | --- | ---: |",
    ]
    for ph in data["timeline"]:
        lines.append(f"| {ph['phase']} | {_utc(ph['start'])} | {ph['seconds']:.1f} s |")
    if data["evaluation"]:
        lines += ["", "## Evaluation: error against cost (test split, 95% intervals over trajectories)", ""]
        lines += [
            "| method | nRMSE | final-step nRMSE | ms per rollout | paired with the classical curve at equal cost "
            "| CRPS (one member: MAE) |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for name in eval_methods(data["evaluation"]):
            v = data["evaluation"][name]
            final = _pm(v, "final_nrmse") if "final_nrmse" in v else "-"
            ms = f"{v['wall_s_per_rollout'] * 1e3:.2f}" if v.get("wall_s_per_rollout") is not None else "(floor)"
            matched = v.get("paired_vs_cost_matched")
            vs = f"{matched['diff']:+.4f} ± {matched['ci95']:.4f} vs {matched['against']} ({matched['ratio']:.2f}×)" if matched else ""
            crps = f"{v['crps']:.5f}" if v.get("crps") is not None else ""
            if v.get("members"):
                crps += f" ({v['members']} members, spread/skill {v['spread_skill']:.2f})"
            lines.append(f"| {name} | {_pm(v, 'nrmse')} | {final} | {ms} | {vs} | {crps} |")
    lines += [
        "",
        "## Curves",
        "",
        f"{len(data['curves'])} logged metric(s), from {data['curves_from']}"
        + (": " + ", ".join(f"`{c['key']}`" for c in data["curves"]) if data["curves"] else ""),
    ]
    if plot_path is not None:
        lines += ["", f"![what the stages logged]({plot_path.name})"]
    if data.get("log_tail"):
        lines += ["", f"## The log's last {len(data['log_tail'])} lines", "", "```", *data["log_tail"], "```"]
    return "\n".join(lines) + "\n"


PANEL_IN = 4  # inches per panel, square
COLUMNS = 4
PLOT_DPI = 100


def panel_count(data: dict) -> int:
    per_step = any((v or {}).get("nrmse_per_step") for v in data["evaluation"].values() if isinstance(v, dict))
    return max(len(data["curves"]) + 2 * per_step, 1)


MARKERS = "osD^v<>pPX*h"


CURVE_POINT = re.compile(r"^(muscl|weno)_(\d+)(_pc)?$")  # the classical cost-accuracy curve's methods


def curve_lines(methods: list[str]) -> dict[str, list[tuple[int, str]]]:
    """The classical curve's methods by line ("muscl", "muscl_pc", ...): (cells, method), coarsest first."""
    lines: dict[str, list[tuple[int, str]]] = {}
    for name in methods:
        m = CURVE_POINT.match(name)
        if m:
            lines.setdefault(m.group(1) + (m.group(3) or ""), []).append((int(m.group(2)), name))
    return {k: sorted(v) for k, v in lines.items()}


def error_against_cost(ax, evaluation: dict, methods: list[str]) -> None:
    """The classical curve as lines (each point labelled with its cells; the piecewise-constant lift dashed), the
    floors as dotted levels labelled at the left, every other method a marker with its 95% interval, named in a
    legend beside the panel (labels written at the points overlap where methods cost alike)."""
    lines = curve_lines(methods)
    on_lines = {name for pts in lines.values() for _, name in pts}
    for line, pts in sorted(lines.items()):
        xs = [max(evaluation[n]["wall_s_per_rollout"] * 1e3, 1e-3) for _, n in pts]
        ys = [evaluation[n]["nrmse"] for _, n in pts]
        scheme = line.split("_")[0].upper().replace("WENO", "WENO5")
        label = f"{scheme} ({'piecewise-constant' if line.endswith('_pc') else 'MC'} lift)"
        ax.plot(
            xs,
            ys,
            "--" if line.endswith("_pc") else "-",
            marker=".",
            lw=1,
            color="0.55" if line.endswith("_pc") else None,
            label=label,
        )
        for (cells, _), x, y in zip(pts, xs, ys):
            if not line.endswith("_pc"):
                ax.annotate(str(cells), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    k = 0
    for name in methods:
        v = evaluation[name]
        if name in on_lines:
            continue
        if v.get("wall_s_per_rollout") is None:  # a floor reads the truth: a level, not a point
            ax.axhline(v["nrmse"], linestyle=":", linewidth=0.8, color="0.4")
            ax.annotate(
                name.replace("floor_", "floor: "),
                (0.01, v["nrmse"]),
                xycoords=("axes fraction", "data"),
                fontsize=5,
                va="bottom",
                color="0.3",
            )
            continue
        ms = max(v["wall_s_per_rollout"] * 1e3, 1e-3)  # persistence costs nothing: drawn at 1 us
        ax.errorbar([ms], [v["nrmse"]], yerr=[v.get("nrmse_ci95") or 0], fmt=MARKERS[k % len(MARKERS)], ms=5, capsize=2, label=name)
        k += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("error against cost", fontsize=9)
    ax.set_xlabel("ms per rollout")
    ax.set_ylabel("nRMSE (95% interval)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)


def plot(data: dict, path: Path) -> Path:
    """One PNG: a panel per logged metric (axes named after the metric and its step), and rollout nRMSE per
    step for each method when the evaluation has it. Rows of four panels."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'vast-launch[plot]'")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = panel_count(data)
    cols, rows = min(COLUMNS, n), -(-n // COLUMNS)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_IN * cols, PANEL_IN * rows), dpi=PLOT_DPI, squeeze=False)
    flat = list(axes.flat)
    for ax, curve in zip(flat, data["curves"]):
        xs, ys = [p[0] for p in curve["points"]], [p[1] for p in curve["points"]]
        ax.plot(xs, ys, lw=1.5)
        if ys and min(ys) > 0 and max(ys) / min(ys) > 100:
            ax.set_yscale("log")
        ax.set_title(curve["key"], fontsize=9)
        ax.set_xlabel(curve["x"])
        ax.set_ylabel(curve["key"].rsplit("/", 1)[-1])
    used = len(data["curves"])
    methods = eval_methods(data["evaluation"])
    shown = [m for m in methods if not CURVE_POINT.match(m) or m in ("muscl_128", "muscl_256")]  # the curve: its two points
    per_step = {m: (data["evaluation"].get(m) or {}).get("nrmse_per_step") for m in shown if not m.startswith("floor_")}
    if any(per_step.values()):
        ax = flat[used]
        for name, values in per_step.items():
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name)
        ax.set_title("rollout nRMSE", fontsize=9)
        ax.set_xlabel("rollout step")
        ax.set_ylabel("nRMSE")
        ax.set_yscale("log")
        ax.legend(fontsize=6, ncol=2)
        error_against_cost(flat[used + 1], data["evaluation"], methods)
        used += 2
    if used == 0:  # nothing to draw: say so in words that fit, with no empty axes
        flat[0].axis("off")
        why = textwrap.fill(f"Nothing was logged: {data['curves_from']}.", 40)
        flat[0].text(0.5, 0.5, why, ha="center", va="center", fontsize=9, wrap=True, transform=flat[0].transAxes)
        used = 1
    for ax in flat[used:]:
        ax.axis("off")
    fig.suptitle(f"{data['launch_id']}  (${data['cost']['estimate_usd']:.4f})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=PLOT_DPI)  # no bbox_inches="tight": the size stays what was asked for
    plt.close(fig)
    return path
