"""The README's main command: the real trainer on the embedded local cloud, W&B offline."""

import json
import re
import struct

import pytest
from conftest import cloud_env, git, no_live_processes, run_cli, stage_config
from wandb_reader import find_runs, read_finished_run

STAGES = ["operator", "diffusion_residual", "consistency_distill"]


@pytest.mark.slow
@pytest.mark.timeout(4200)  # a safety limit: a loaded 2-core machine trains 10-25x slower
def test_local_smoke_launch_end_to_end(repo_factory):
    repo = repo_factory()
    head = git(repo, "rev-parse", "HEAD")
    # 628 s in CI; 2,000 s ran out when a second smoke training shared the 2 cores (the launcher was SIGINTed)
    p = run_cli(["--local", "--auto-shutdown", "--config", "configs/burgers.yaml", "--profile", "smoke"], cwd=repo, timeout=3600)
    print(p.stdout[-3000:])
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(run_cli(["status", "--json"], cwd=repo).stdout)
    assert row["state"] == "destroyed" and row["commit"] == head
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself"
    run_dir = repo.parent / "home" / "local" / "store" / row["launch_id"]  # the state dir's store, not the repo
    assert not (repo / "runs").exists()
    assert (run_dir / "log" / "boot-1.log").exists() and (run_dir / "result.json").exists()
    assert "the instance destroyed itself" in p.stdout  # its own last line may go with it: no store holds it
    runs = [read_finished_run(f) for f in find_runs(run_dir / "out")]
    assert sorted(r.job_type for r in runs) == sorted(STAGES)
    assert {r.group for r in runs} == {row["wandb_group"]} == {row["launch_id"]}
    assert all(r.config["launch.commit"] == head for r in runs)
    # The smoke profile learns, as launched (this is the suite's one full smoke training): every stage
    # halves its loss at least. Judged on the validation split (the test split is for the report), and only
    # by what its 16 trajectories can tell apart: the operator is far from persistence and the resolved
    # solver better still; the refiner and the distilled samplers are not significantly worse than the
    # operator they refine (their paired 95% intervals reach below zero), and distilled is cheaper.
    for stage in STAGES:
        r = json.loads((run_dir / "out" / stage / "result.json").read_text())
        assert r["loss_first"] >= 2 * r["loss_last"], (stage, r)
    ev = json.loads((run_dir / "out" / "eval_val.json").read_text())
    assert ev["operator"]["n_trajectories"] == 16
    assert ev["solver_1x"]["nrmse"] < ev["operator"]["nrmse"] < ev["persistence"]["nrmse"] / 10
    for method in ("refiner", "distilled_1step", "distilled_2step"):
        paired = ev[method]["paired_vs_operator"]
        assert paired["diff"] - paired["ci95"] < 0, (method, paired)
    assert ev["distilled_1step"]["wall_s_per_rollout"] < ev["refiner"]["wall_s_per_rollout"]
    # progress: each phase and stage k/3 with elapsed time and cost so far
    for phase in ("check", "search", "create", "instance", "stage 1/3", "stage 2/3", "stage 3/3", "teardown"):
        assert (
            re.search(rf"^\[\s*[\d.]+s \$\d+\.\d{{4}}\] {re.escape(phase)}", p.stdout, re.M)
            or phase in ("check", "search")
            and re.search(rf"^\[\s*[\d.]+s\] {phase}", p.stdout, re.M)
        ), phase
    assert re.search(r"\[ups\] operator step \d+/\d+ loss", p.stdout)  # the trainer's own progress, streamed

    # the report, with the PNG of curves and rollout error
    rp = run_cli(["report", row["launch_id"], "--plot", "--json"], cwd=repo)
    assert rp.returncode == 0, rp.stderr
    rep = json.loads(rp.stdout)
    assert [p["phase"] for p in rep["timeline"]][0] == "queued (search, create)"
    assert [p["phase"] for p in rep["timeline"] if p["phase"].startswith("stage ")] == [f"stage {s}" for s in STAGES]
    assert "teardown" in [p["phase"] for p in rep["timeline"]]
    assert set(rep["evaluation"]) >= {"operator", "refiner", "distilled_1step"}
    md = (repo / rep["markdown"]).read_text()
    assert "| refiner |" in md and "## Timeline" in md and row["wandb_group"] in md
    png = (repo / rep["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    rows = -(-rep["panels"] // 4)  # a panel per logged metric and the rollout error, four to a row
    assert rep["panels"] >= 4 and (width, height) == (1600, 400 * rows)
    assert {c["key"] for c in rep["curves"]} >= {f"training/{s}/loss" for s in STAGES}
    from PIL import Image  # matplotlib's own dependency: decode the whole image, not only its header

    with Image.open(repo / rep["png"]) as img:
        img.load()
        low, high = img.convert("L").getextrema()
        assert img.size == (1600, 400 * rows) and high - low > 100  # drawn on, not a blank canvas


def test_teardown_waits_for_wandb_then_destroys(repo_factory, tmp_path):
    """Teardown waits for W&B by watching its process, not by sleeping, then destroys itself
    (how fast: benchmarks/soak.py measures the seconds billed after the last stage)."""
    from vast_launch.localcloud import LocalCloud

    cmd = (
        'python -m ups.train --config "$VL_CONFIG" --profile smoke --stage {stage} --out "$VL_OUT" '
        "--set operator.iters=20 --set data.n_train=8"
    )
    repo = repo_factory(
        stage_config(
            [{"name": "operator", "command": cmd}], train={"profile": "smoke", "profiles": {"smoke": {"data": {"n_train": 8}}}}
        )
    )
    with LocalCloud(root=tmp_path / "c", price_dph=3.6, loading_seconds=0.1) as lc:
        p = run_cli(
            ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env=cloud_env(lc), timeout=1500
        )
        assert p.returncode == 0, p.stderr[-2000:]
        (inst,) = lc.cloud.instances.values()
        vl = next(inst.workdir.glob("vl-*"))
        last_stage_end = max(float(line.split()[2]) for line in (vl / "stage_times").read_text().splitlines())
        after = inst.ended_at - last_stage_end
        print(f"billed seconds after the last stage finished: {after:.2f} s")
        assert after > 0 and inst.destroyed_by == "instance"
        runs = [read_finished_run(f, timeout=0) for f in find_runs(vl / "out")]
        assert runs and all(r.finished for r in runs)  # W&B had written its exit record before the destroy
        assert no_live_processes(lc)
