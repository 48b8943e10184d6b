"""The real trainer: smoke profile quality, resume after a kill, DDP with gloo on CPU."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import PROJECT, wait_for

CONFIG = str(PROJECT / "configs" / "burgers.yaml")
TINY = [
    "--set",
    "operator.iters=30",
    "--set",
    "diffusion_residual.iters=30",
    "--set",
    "consistency_distill.iters=20",
    "--set",
    "data.n_train=16",
]


def train_argv(out, *args):
    return [sys.executable, "-m", "ups.train", "--config", CONFIG, "--profile", "smoke", "--out", str(out), *args]


def ups_train(out, *args, env=None, timeout=1500):
    e = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run(
        train_argv(out, *args),
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
    )


@pytest.mark.slow
def test_resume_after_kill_skips_finished_stage(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        train_argv(out, "--stage", "all", "--set", "operator.iters=30", "--set", "diffusion_residual.iters=100000"),
        env=dict(os.environ, WANDB_MODE="disabled"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: (out / "operator" / "done").exists(), 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    ckpt = out / "operator" / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    assert not (out / "diffusion_residual" / "done").exists()
    p = ups_train(out, "--stage", "all", *TINY)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "operator: already done" in p.stdout
    assert "[ups] operator step" not in p.stdout
    assert ckpt.stat().st_mtime_ns == before
    assert (out / "consistency_distill" / "done").exists()


def test_stage_without_predecessor_fails_clearly(tmp_path):
    p = ups_train(tmp_path / "run", "--stage", "diffusion_residual", *TINY)
    assert p.returncode != 0
    assert "stage 'operator' has no checkpoint" in p.stderr


@pytest.mark.slow
def test_ddp_two_processes_gloo_cpu(tmp_path):
    out = tmp_path / "run"
    p = ups_train(out, "--stage", "operator", "--nproc", "2", *TINY, timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "operator" / "done").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["training/operator/step"] for r in rows if "training/operator/step" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # rank 0 logs alone: no duplicate steps


@pytest.mark.slow
def test_a_checkpoints_evaluation_does_not_depend_on_what_else_was_built_or_evaluated(tmp_path):
    """The refiner is evaluated after stage 2 and again after stage 3 (which also builds and evaluates the
    distilled model): the same checkpoint must report the same nRMSE. With the MSE ablation and two
    sampling seeds, every baseline and method lands in both splits' files, with its statistics."""
    out = tmp_path / "run"
    extra = ["--set", "diffusion_residual.mse_iters=20", "--set", "eval.seeds=2"]
    for stage in ("operator", "diffusion_residual"):
        p = ups_train(out, "--stage", stage, *TINY, *extra)
        assert p.returncode == 0, p.stderr[-3000:]
    after_stage_2 = json.loads((out / "eval_val.json").read_text())["refiner"]["nrmse"]
    p = ups_train(out, "--stage", "consistency_distill", *TINY, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    ev = json.loads((out / "eval_val.json").read_text())
    assert "distilled_1step" in ev and ev["refiner"]["nrmse"] == after_stage_2, (after_stage_2, ev["refiner"])

    methods = {"persistence", "solver_half", "solver_1x", "solver_2x", "solver_4x", "operator"}
    methods |= {"corrector_mse", "refiner_1call", "refiner", "distilled_1step", "distilled_2step"}
    test = json.loads((out / "eval.json").read_text())
    assert set(ev) == set(test) == methods
    assert ev["refiner"]["seeds"] == 2 and len(ev["refiner"]["seed_nrmse"]) == 2 and ev["operator"]["seeds"] == 1
    assert ev["operator"]["n_trajectories"] == 16 and len(ev["operator"]["error_spectrum"]) == 64 // 2 + 1
    for name, v in ev.items():
        assert 0 < v["nrmse_ci95"] < v["nrmse"], name
        assert 0 <= v["high_correlation_time"] <= 10 * 0.05, name  # within the rollout's horizon
        if name != "operator":
            assert "paired_vs_operator" in v, name
        if name != "solver_1x":
            assert "paired_vs_solver_1x" in v, name
    logged = (out / "metrics.jsonl").read_text()
    assert any("training/diffusion_residual_mse/loss" in json.loads(row) for row in logged.splitlines())  # its own curve

    # evaluating the finished stages again, without training, gives the same numbers and logs nothing
    p = ups_train(out, "--evaluate", *TINY, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads((out / "eval_val.json").read_text())
    assert {k: v["nrmse"] for k, v in again.items()} == {k: v["nrmse"] for k, v in ev.items()}
    assert (out / "metrics.jsonl").read_text() == logged and "[ups] operator step" not in p.stdout


def test_a_training_seed_changes_the_model_and_not_the_data(tmp_path):
    """train_seed repeats a run with other weights, batches and noise on the same trajectories: the
    spread over training seeds needs the data fixed."""
    runs = []
    for i, seed in enumerate((0, 1, 0)):
        out = tmp_path / f"run{i}"
        p = ups_train(out, "--stage", "operator", *TINY, "--set", f"train_seed={seed}", "--set", "eval.baselines=false")
        assert p.returncode == 0, p.stderr[-3000:]
        data_line = next(line for line in p.stdout.splitlines() if line.startswith("[ups] data "))
        runs.append((data_line.split()[2], json.loads((out / "operator" / "result.json").read_text())["loss_last"]))
    (data0, loss0), (data1, loss1), (data2, loss2) = runs
    assert data0 == data1 == data2  # the same dataset key
    assert loss1 != loss0 and loss2 == loss0  # another seed trains another model; the same seed, the same one


@pytest.mark.slow
def test_a_stage_killed_mid_way_continues_from_its_checkpoint_bit_for_bit(tmp_path):
    """checkpoint_every: a stage killed after a mid-stage checkpoint continues from it, runs only the steps
    left, and ends with exactly the weights of a run that was never interrupted."""
    steps = [*TINY[:2], "--set", "diffusion_residual.iters=400", "--set", "consistency_distill.iters=20", "--set", "data.n_train=16"]
    every = ["--set", "checkpoint_every=10"]
    whole = ups_train(tmp_path / "whole", "--stage", "all", *steps, *every)
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_argv(out, "--stage", "all", *steps, *every),
        env=dict(os.environ, WANDB_MODE="disabled"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: (out / "partial" / "diffusion_residual.pt").exists() or proc.poll() is not None, 300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert not (out / "diffusion_residual" / "done").exists(), "the stage ended before it was killed"
    again = ups_train(out, "--stage", "all", *steps, *every)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "operator: already done" in again.stdout and "diffusion_residual: resuming at step" in again.stdout
    result = json.loads((out / "diffusion_residual" / "result.json").read_text())
    assert 0 < result["resumed_from_step"] < 400 and result["steps_run"] == 400 - result["resumed_from_step"], result
    assert not list((out / "partial").glob("*.pt"))  # a finished stage's partial checkpoints are gone

    import torch

    for stage in ("diffusion_residual", "consistency_distill"):
        a = torch.load(tmp_path / "whole" / stage / "checkpoint.pt", weights_only=False)["model"]
        b = torch.load(out / stage / "checkpoint.pt", weights_only=False)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stage
