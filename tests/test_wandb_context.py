"""The W&B context against real wandb in offline mode, read back from the .wandb files."""

import os
import subprocess
import sys

import pytest
from conftest import PROJECT
from wandb_reader import find_runs
from wandb_reader import read_finished_run as read_run

CONFIG = str(PROJECT / "configs" / "burgers.yaml")
TINY = [
    "--set",
    "operator.iters=20",
    "--set",
    "diffusion_residual.iters=20",
    "--set",
    "consistency_distill.iters=20",
    "--set",
    "data.n_train=16",
]
STAGES = ["operator", "diffusion_residual", "consistency_distill"]


def ups_train(out, env, *args):
    e = dict(os.environ, **env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ups.train",
            "--config",
            CONFIG,
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--stage",
            "all",
            *TINY,
            *args,
        ],
        capture_output=True,
        text=True,
        env=e,
        timeout=1500,
    )


@pytest.mark.slow
def test_three_stages_one_group_each_its_own_step_metric(tmp_path):
    p = ups_train(
        tmp_path,
        {
            "WANDB_MODE": "offline",
            "WANDB_RUN_GROUP": "parent-group-42",
            "VL_LAUNCH_ID": "L1",
            "CONTAINER_API_KEY": "container-secret-key-xyz",
            "CONTAINER_ID": "777",
        },
    )
    assert p.returncode == 0, p.stderr[-2000:]
    runs = [read_run(f) for f in find_runs(tmp_path)]
    assert sorted(r.job_type for r in runs) == sorted(STAGES)
    assert {r.group for r in runs} == {"parent-group-42"}
    for r in runs:
        stage = r.job_type
        step = f"training/{stage}/step"
        assert (f"training/{stage}/*", step) in r.metrics
        rows = [h for h in r.history if f"training/{stage}/loss" in h]
        assert len(rows) >= 2 and all(step in h for h in rows)
        assert [h[step] for h in rows] == sorted(h[step] for h in rows)
        assert r.name.startswith(f"burgers-{stage}-")
        assert r.config["launch.launch_id"] == "L1" and r.config["vast.container_id"] == "777"
        assert "cpu.count" in r.config and "memory.gb" in r.config
        assert "container-secret-key-xyz" not in str(r.config)


def test_explicit_config_group_wins_and_is_exported(tmp_path, monkeypatch):
    from ups.utils.wandb_context import WandbContext, resolve_group

    monkeypatch.setenv("WANDB_RUN_GROUP", "from-parent")
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    assert resolve_group({"wandb": {"group": "explicit"}}) == ("explicit", "config wandb.group")
    assert resolve_group({"wandb": {}}) == ("from-parent", "WANDB_RUN_GROUP")
    monkeypatch.delenv("WANDB_RUN_GROUP")
    monkeypatch.setenv("WANDB_GROUP", "legacy")
    assert resolve_group({})[0] == "legacy"
    monkeypatch.delenv("WANDB_GROUP")
    monkeypatch.setenv("SUBMITIT_JOB_ID", "sub-1")
    assert resolve_group({})[0] == "sub-1"
    monkeypatch.delenv("SUBMITIT_JOB_ID")
    assert resolve_group({})[0] == "999"
    monkeypatch.setenv("WANDB_MODE", "offline")
    with WandbContext({"name": "x", "wandb": {"group": "explicit"}}, "operator", run_dir=tmp_path, quiet=True) as ctx:
        ctx.log_training_metric("operator", "loss", 1.0, 1)
    assert os.environ["WANDB_RUN_GROUP"] == "explicit"
    (run,) = [read_run(f) for f in find_runs(tmp_path)]
    assert run.group == "explicit"


def _log_two_stages_in_one_run(tmp_path, use_context: bool):
    """Stage B restarts its step count at 0 inside the same run."""
    import wandb

    from ups.utils.wandb_context import WandbContext

    if use_context:
        with WandbContext({"name": "bug", "wandb": {"mode": "offline"}}, "a", run_dir=tmp_path, quiet=True) as ctx:
            ctx.define_stage_metrics("b")
            for i in range(5):
                ctx.log_training_metric("a", "loss", 1.0 / (i + 1), i)
            for i in range(5):
                ctx.log_training_metric("b", "loss", 2.0 / (i + 1), i)
    else:
        run = wandb.init(project="bug", dir=str(tmp_path), mode="offline", settings=wandb.Settings(silent=True))
        for i in range(5):
            run.log({"training/a/loss": 1.0 / (i + 1)}, step=i)
        for i in range(5):
            run.log({"training/b/loss": 2.0 / (i + 1)}, step=i)
        run.finish()
    (run,) = [read_run(f) for f in find_runs(tmp_path)]
    assert run.finished
    return run


def test_step_kwarg_drops_second_stage_but_context_keeps_it(tmp_path):
    buggy = _log_two_stages_in_one_run(tmp_path / "buggy", use_context=False)
    a_rows = [h for h in buggy.history if "training/a/loss" in h]
    b_rows = [h for h in buggy.history if "training/b/loss" in h]
    assert len(a_rows) == 5
    assert len(b_rows) < 5  # W&B silently dropped the rows whose step went backwards

    fixed = _log_two_stages_in_one_run(tmp_path / "fixed", use_context=True)
    b_rows = [h for h in fixed.history if "training/b/loss" in h]
    assert [h["training/b/step"] for h in b_rows] == [0, 1, 2, 3, 4]
    assert ("training/b/*", "training/b/step") in fixed.metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    "env",
    [
        {"WANDB_MODE": "disabled"},
        {"WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40, "UPS_WANDB_INIT_TIMEOUT": "5"},
    ],
    ids=["disabled", "bogus-online-endpoint"],
)
def test_training_completes_without_reachable_wandb(tmp_path, env):
    p = ups_train(tmp_path, env, "--stage", "operator")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "operator" / "done").exists()
    assert "training/operator/loss" in (tmp_path / "metrics.jsonl").read_text()
