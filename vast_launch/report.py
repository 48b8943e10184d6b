"""A launch, after the fact: timeline, cost, hardware, the trainer's evaluation, curves.

Everything comes from the ledger and the outputs kept on this machine (`runs/local/<id>` for
local launches, or a directory given with --out); nothing is looked up again.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from .cost import estimate

EVAL_ORDER = ("operator", "refiner", "distilled_1step", "distilled_2step")


def _utc(t: Optional[float]) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def timeline(row: dict, events: list[dict], stages: list[dict]) -> list[dict]:
    """Phases in order: queued (search/create), loading, each stage, teardown."""
    marks: list[tuple[float, str]] = [(row["created_at"], "queued (search, create)")]
    for ev in events:
        if ev["state"] in ("loading", "running", "stopped", "exited", "destroying", "teardown"):
            label = {"loading": "loading (image, onstart)", "running": "running (clone, setup)",
                     "destroying": "teardown", "teardown": "teardown"}.get(ev["state"], ev["state"])
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


def metrics_curves(out_dir: Optional[Path]) -> dict[str, list[tuple[int, float]]]:
    """stage -> [(step, loss)] from the trainer's metrics.jsonl (always written, W&B or not)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    if out_dir is None:
        return curves
    for path in sorted(Path(out_dir).rglob("metrics.jsonl")):
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            for key, value in rec.items():
                if key.startswith("training/") and key.endswith("/loss"):
                    stage = key.split("/")[1]
                    step = rec.get(f"training/{stage}/step")
                    if step is not None:
                        curves.setdefault(stage, []).append((int(step), float(value)))
    return curves


def build(ledger, row: dict, out_dir: Optional[Path]) -> dict:
    events = ledger.events(row["id"])
    stages = ledger.stages(row["id"])
    est = estimate(row, events)
    cost = row["cost_usd"] if row.get("cost_usd") is not None else est["cost_usd"]
    ev_path = Path(out_dir) / "eval.json" if out_dir else None
    evaluation = json.loads(ev_path.read_text()) if ev_path and ev_path.exists() else {}
    project = row.get("wandb_project") or ""
    group = row.get("wandb_group") or ""
    return {
        "launch_id": row["id"], "state": row["state"], "end_reason": row.get("end_reason"),
        "commit": row.get("commit_sha"), "target": row.get("target"), "profile": row.get("profile"),
        "hardware": {"gpu_name": row.get("gpu_name"), "num_gpus": row.get("num_gpus"),
                     "instance_id": row.get("instance_id"), "machine_id": row.get("machine_id"),
                     "dph_total": row.get("dph_total")},
        "cost": {"estimate_usd": cost, "billed_usd": row.get("billed_usd"), "gpu_hours": est["gpu_hours"],
                 "gpu_seconds": est["gpu_seconds"], "storage_seconds": est["storage_seconds"]},
        "timeline": timeline(row, events, stages),
        "evaluation": evaluation,
        "wandb": {"project": project, "group": group,
                  "url": f"https://wandb.ai/{project}/groups/{group}" if "/" in project and group else
                  (f"https://wandb.ai/<entity>/{project}/groups/{group}" if project and group else None)},
        "curves": metrics_curves(out_dir),
        "out_dir": str(out_dir) if out_dir else None,
    }


def to_markdown(data: dict, plot_path: Optional[Path] = None) -> str:
    hw, cost = data["hardware"], data["cost"]
    lines = [f"# Launch {data['launch_id']}", "",
             f"- state: **{data['state']}**, {data['end_reason'] or ''}",
             f"- commit `{(data['commit'] or '')[:12]}`, target {data['target']}, profile {data['profile']}",
             f"- hardware: {hw['gpu_name'] or '-'} x{hw['num_gpus'] or '-'} (instance {hw['instance_id']}, "
             f"machine {hw['machine_id']}), ${hw['dph_total'] or 0:.3f}/h",
             f"- cost: estimate ${cost['estimate_usd']:.4f}"
             + (f", billed ${cost['billed_usd']:.4f}" if cost["billed_usd"] is not None else ", billed: not known")
             + f", {cost['gpu_hours']:.4f} GPU h",
             f"- W&B: project {data['wandb']['project'] or '-'}, group {data['wandb']['group'] or '-'}"
             + (f" ({data['wandb']['url']})" if data["wandb"]["url"] else ""),
             "", "## Timeline", "", "| phase | start (UTC) | duration |", "| --- | --- | ---: |"]
    for ph in data["timeline"]:
        lines.append(f"| {ph['phase']} | {_utc(ph['start'])} | {ph['seconds']:.1f} s |")
    lines += ["", "## Evaluation (rollout nRMSE)", ""]
    if data["evaluation"]:
        lines += ["| method | nRMSE | ms per rollout |", "| --- | ---: | ---: |"]
        for name in [m for m in EVAL_ORDER if m in data["evaluation"]] + \
                [m for m in data["evaluation"] if m not in EVAL_ORDER]:
            v = data["evaluation"][name]
            lines.append(f"| {name} | {v['nrmse']:.4f} | {v['wall_s_per_rollout'] * 1e3:.2f} |")
    else:
        lines.append("no eval.json among the kept outputs")
    if plot_path is not None:
        lines += ["", f"![training curves and rollout error]({plot_path.name})"]
    return "\n".join(lines) + "\n"


PLOT_SIZE_IN = (16, 4)
PLOT_DPI = 100


def plot(data: dict, path: Path) -> Path:
    """One PNG: the loss curve of each stage, and rollout nRMSE per step for each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ["operator", "diffusion_residual", "consistency_distill"]
    fig, axes = plt.subplots(1, 4, figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
    for ax, stage in zip(axes[:3], stages):
        pts = data["curves"].get(stage, [])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.5)
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no metrics", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{stage} loss")
        ax.set_xlabel(f"training/{stage}/step")
    ax = axes[3]
    for name in EVAL_ORDER:
        per_step = (data["evaluation"].get(name) or {}).get("nrmse_per_step")
        if per_step:
            ax.plot(range(1, len(per_step) + 1), per_step, marker="o", ms=3, label=name)
    ax.set_title("rollout nRMSE")
    ax.set_xlabel("rollout step")
    if ax.lines:
        ax.legend(fontsize=8)
    fig.suptitle(f"{data['launch_id']}  (${data['cost']['estimate_usd']:.4f})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=PLOT_DPI)  # no bbox_inches="tight": the size stays what was asked for
    plt.close(fig)
    return path
