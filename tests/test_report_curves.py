"""Reports plot whatever the stages logged, for any project: metrics.jsonl of any shape, or offline W&B runs."""

import json
import struct
import subprocess
import sys

from vast_launch.reports import report
from vast_launch.reports.curves import collect, from_rows


def test_any_numeric_key_becomes_a_curve_over_its_own_step():
    rows = [
        {"epoch": e, "train_loss": 1 / (e + 1), "val/acc": 0.5 + e / 20, "val/step": e * 10, "note": "x", "t": 1.0 + e, "flag": True}
        for e in range(5)
    ]
    curves = {c.key: c for c in from_rows(rows)}
    assert set(curves) == {"train_loss", "val/acc"}  # not the steps, the clock, text or booleans
    assert curves["train_loss"].x_label == "epoch" and curves["train_loss"].points[-1] == (4, 0.2)
    assert curves["val/acc"].x_label == "val/step" and curves["val/acc"].points[1] == (10, 0.55)
    assert [c.key for c in from_rows([{"acc": 1.0, "loss": 2.0}])] == ["loss", "acc"]  # losses first
    assert from_rows([{"loss": 1.0}, {"loss": 0.5}])[0].points == [(0, 1.0), (1, 0.5)]  # no step: the row


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _launch(data: dict) -> dict:
    """A report's data with the launch fields a Markdown report reads, for a finished launch that cost nothing."""
    return {
        **data,
        "state": "destroyed",
        "end_reason": "",
        "commit": "",
        "target": "vast",
        "profile": "",
        "hardware": {"gpu_name": None, "num_gpus": 1, "instance_id": 1, "machine_id": 1, "dph_total": 0},
        "cost": {"estimate_usd": 0, "billed_usd": None, "gpu_hours": 0},
        "wandb": {"project": "", "group": "", "url": None},
        "timeline": [],
    }


def test_a_plain_projects_metrics_file_is_plotted_with_named_axes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"epoch": e, "loss": 1 / (e + 1), "acc": e / 10}) for e in range(10)) + "\n"
    )
    data = {"launch_id": "plain-1", "cost": {"estimate_usd": 0.0}, "evaluation": {}}
    data["curves"], data["curves_from"] = [c.as_dict() for c in collect(out)[0]], "metrics.jsonl"
    png = report.plot(data, tmp_path / "p.png")
    assert _png_size(png) == (800, 400) and report.panel_count(data) == 2
    md = report.to_markdown(_launch(data), png)
    assert "Evaluation" not in md and "2 logged metric(s), from metrics.jsonl: `loss`, `acc`" in md


def test_offline_wandb_history_is_read_with_each_metrics_step(tmp_path):
    """A real offline W&B run, as a user's script would log it: curves over the step metric it defined."""
    script = (
        "import wandb\n"
        f"run = wandb.init(project='p', mode='offline', dir={str(tmp_path / 'out')!r})\n"
        "run.define_metric('train/step'); run.define_metric('train/*', step_metric='train/step')\n"
        "for i in range(6): run.log({'train/step': i * 100, 'train/loss': 1.0 / (i + 1)})\n"
        "run.finish()\n"
    )
    (tmp_path / "out").mkdir()
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_SILENT": "true"},
    )
    curves, source = collect(tmp_path / "out")
    assert source == "1 offline W&B run(s)"
    (loss,) = [c for c in curves if c.key == "train/loss"]
    assert loss.x_label == "train/step" and [p[0] for p in loss.points] == [0, 100, 200, 300, 400, 500]


def _method(nrmse, ms, **more):
    return {"nrmse": nrmse, "nrmse_ci95": nrmse / 10, "final_nrmse": nrmse, "wall_s_per_rollout": ms / 1e3 if ms else None, **more}


def test_the_classical_curve_is_drawn_as_lines_the_floors_as_levels_and_learned_methods_as_points(tmp_path):
    ev = {"floor_reference": _method(0.0004, None), "floor_projection_128": _method(0.016, None)}
    for scheme, base in (("muscl", 1.0), ("weno", 2.5)):
        for cells in (64, 128, 256, 512):
            ev[f"{scheme}_{cells}"] = _method(0.05 * (64 / cells) ** 2, base * cells / 10)
            if cells < 256:
                ev[f"{scheme}_{cells}_pc"] = _method(0.08 * (64 / cells) ** 2, base * cells / 10)
    ev["hybrid"] = _method(
        0.011,
        27,
        nrmse_per_step=[0.01, 0.012],
        paired_vs_cost_matched={"against": "muscl_128..muscl_256", "diff": 0.004, "ci95": 0.001, "ratio": 1.5},
        crps=0.00213,
    )
    ev["refiner"] = _method(0.02, 120, crps=0.0031, members=3, spread_skill=0.42)
    lines = report.curve_lines(list(ev))
    assert lines["muscl"] == [(64, "muscl_64"), (128, "muscl_128"), (256, "muscl_256"), (512, "muscl_512")]
    assert [c for c, _ in lines["weno_pc"]] == [64, 128] and "hybrid" not in str(lines)
    data = {"launch_id": "curve-1", "cost": {"estimate_usd": 0.0}, "evaluation": ev, "curves": [], "curves_from": "x"}
    png = report.plot(data, tmp_path / "c.png")
    assert _png_size(png) == (800, 400)
    md = report.to_markdown(_launch(data))
    assert "| floor_reference | 0.0004 ± 0.0000 | 0.0004 | (floor) |  |  |" in md
    assert "| hybrid | 0.0110 ± 0.0011 | 0.0110 | 27.00 | +0.0040 ± 0.0010 vs muscl_128..muscl_256 (1.50×) | 0.00213 |" in md
    assert "| refiner | 0.0200 ± 0.0020 | 0.0200 | 120.00 |  | 0.00310 (3 members, spread/skill 0.42) |" in md
