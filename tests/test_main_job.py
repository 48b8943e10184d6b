"""The README's main command: the real trainer on the embedded local cloud, W&B offline."""

import json

from conftest import cloud_env, git, no_live_processes, run_cli, stage_config
from wandb_reader import find_runs, read_finished_run

STAGES = ["operator", "diffusion_residual", "consistency_distill"]


def test_local_smoke_launch_end_to_end(repo_factory):
    repo = repo_factory()
    head = git(repo, "rev-parse", "HEAD")
    p = run_cli(["--local", "--auto-shutdown", "--config", "configs/burgers.yaml", "--profile", "smoke"], cwd=repo,
                timeout=600)
    print(p.stdout[-3000:])
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(run_cli(["status", "--json"], cwd=repo).stdout)
    assert row["state"] == "destroyed" and row["commit"] == head
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself"
    run_dir = repo / "runs" / "local" / row["launch_id"]
    assert (run_dir / "boot.log").exists() and "destroying instance" in p.stdout
    runs = [read_finished_run(f) for f in find_runs(run_dir / "out")]
    assert sorted(r.job_type for r in runs) == sorted(STAGES)
    assert {r.group for r in runs} == {row["wandb_group"]} == {row["launch_id"]}
    assert all(r.config["launch.commit"] == head for r in runs)
    ev = json.loads((run_dir / "out" / "eval.json").read_text())
    assert ev["refiner"]["nrmse"] < ev["operator"]["nrmse"]


def test_billed_seconds_after_the_last_stage(repo_factory, tmp_path):
    """Teardown waits for W&B by watching its process, not by sleeping: billing stops within 2 s."""
    from vast_launch.localcloud import LocalCloud

    cmd = ('python -m ups.train --config "$VL_CONFIG" --profile smoke --stage {stage} --out "$VL_OUT" '
           "--set operator.iters=20 --set data.n_train=8")
    repo = repo_factory(stage_config([{"name": "operator", "command": cmd}],
                                     train={"profile": "smoke", "profiles": {"smoke": {"data": {"n_train": 8}}}}))
    with LocalCloud(root=tmp_path / "c", price_dph=3.6, loading_seconds=0.1) as lc:
        p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo,
                    env=cloud_env(lc), timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        (inst,) = lc.cloud.instances.values()
        vl = next(inst.workdir.glob("vl-*"))
        last_stage_end = max(float(line.split()[2]) for line in (vl / "stage_times").read_text().splitlines())
        after = inst.ended_at - last_stage_end
        print(f"billed seconds after the last stage finished: {after:.2f} s")
        assert 0 < after < 2.0
        assert no_live_processes(lc)
