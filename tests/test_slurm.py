"""The SLURM target on a real single-node cluster (munged + slurmctld + slurmd started by the fixture)."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import git, run_cli, stage_config
from wandb_reader import find_runs, read_finished_run

from vast_launch.ledger import Ledger
from vast_launch.slurm import jobs as slurm

TINY = (
    "--set operator.iters=20 --set diffusion_residual.iters=20 --set consistency_distill.iters=20 --set data.n_train=16 "
    "--set diffusion_residual.sampler_steps=2 --set consistency_distill.teacher_steps=4 "
    "--set eval.n_test=4 --set eval.rollout_steps=2"
)
TRAIN = 'python -m ups.train --config "$VL_CONFIG" --profile "$VL_PROFILE" --stage {stage} --out "$VL_OUT" ' + TINY
STAGES = ["operator", "diffusion_residual", "consistency_distill"]
RES = {"walltime": "00:30:00", "memory": "2G", "cpus": 1, "gpus": 0}
SLURM_WAIT = 1500  # a safety bound only: a real training stage takes minutes on a loaded 2-core machine


def pipeline_config(stage2_prefix=""):
    stages = [{"name": s, "command": (stage2_prefix if s == "diffusion_residual" else "") + TRAIN} for s in STAGES]
    cfg = stage_config(stages, train={"profile": "smoke"})
    cfg["slurm"] = {
        "pipelines": {
            "smoke": {s: dict(RES) for s in STAGES},
            "big": {
                "operator": {"walltime": "02:00:00", "memory": "32G", "cpus": 8, "gpus": 1},
                "diffusion_residual": {"walltime": "1-00:00:00", "memory": "48G", "cpus": 4, "gpus": 2},
            },
        }
    }
    return cfg


def with_profiles(repo):
    """The test config borrows the real config's training profiles."""
    import yaml

    real = yaml.safe_load((repo / "configs" / "burgers.yaml").read_text())
    cfg = yaml.safe_load((repo / "configs" / "test.yaml").read_text())
    cfg["train"] = real["train"]
    (repo / "configs" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "profiles"], cwd=repo, check=True)
    return repo


def submit(repo, *args):
    p = run_cli(["--target", "slurm", "--config", "configs/test.yaml", "--wandb-mode", "offline", *args], cwd=repo)
    assert p.returncode == 0, p.stderr + p.stdout
    return p


def last_launch():
    with Ledger() as ledger:
        return ledger.launches()[-1]


def stage_window(log: Path):
    text = log.read_text()
    start = float(re.search(r"start at=([\d.]+)", text).group(1))
    end = float(re.search(r"exit \d+ at=([\d.]+)", text).group(1))
    return start, end


@pytest.mark.slow
def test_stages_chain_as_jobs_in_one_group_a_failure_cancels_the_rest_and_from_stage_resumes(repo_factory, slurm_env):
    """One pipeline, trained for real, walks every path: three jobs chained with afterok, stage 2 fails
    and cancels stage 3, `--from-stage` reruns 2 and 3 on stage 1's checkpoint in the same W&B group.
    (One test, not two: each real training stage costs minutes on a loaded 2-core machine.)"""
    repo = with_profiles(repo_factory(pipeline_config(stage2_prefix='[ -f "$VL_OUT/fixed" ] || exit 7; ')))
    p = submit(repo, "--pipeline", "smoke")
    first = last_launch()
    jobs = first["extra"]["jobs"]
    assert [j["stage"] for j in jobs] == STAGES and len({j["job_id"] for j in jobs}) == 3
    assert first["wandb_group"] in p.stdout and all(j["job_id"] in p.stdout for j in jobs)
    states = slurm.wait([j["job_id"] for j in jobs], timeout=SLURM_WAIT)
    by_stage = {j["stage"]: states[j["job_id"]] for j in jobs}
    assert by_stage["operator"]["state"] == "COMPLETED"
    assert by_stage["diffusion_residual"]["state"] == "FAILED" and by_stage["diffusion_residual"]["exit_code"] == "7:0"
    assert by_stage["consistency_distill"]["state"] == "CANCELLED"
    assert by_stage["consistency_distill"]["reason"] == "DependencyNeverSatisfied"
    status = json.loads(run_cli(["status", first["id"], "--json"], cwd=repo).stdout)
    assert status["state"] == "failed" and "diffusion_residual" in status["end_reason"]

    out = Path(first["extra"]["out_dir"])
    checkpoint = out / "operator" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    (out / "fixed").touch()
    p = submit(repo, "--pipeline", "smoke", "--from-stage", "diffusion_residual")
    second = last_launch()
    assert second["id"] != first["id"] and second["wandb_group"] == first["wandb_group"]
    jobs2 = second["extra"]["jobs"]
    assert [j["stage"] for j in jobs2] == ["diffusion_residual", "consistency_distill"]
    states = slurm.wait([j["job_id"] for j in jobs2], timeout=SLURM_WAIT)
    assert all(s["state"] == "COMPLETED" for s in states.values()), states
    windows = [stage_window(slurm.job_log(j)) for j in (jobs[0], *jobs2)]
    assert windows[0][1] <= windows[1][0] and windows[1][1] <= windows[2][0]  # afterok: strictly one after another
    status = json.loads(run_cli(["status", second["id"], "--json"], cwd=repo).stdout)
    assert status["state"] == "completed" and [s["state"] for s in status["stages"]] == ["COMPLETED"] * 2
    assert checkpoint.stat().st_mtime_ns == before  # stage 1 was not rerun; its checkpoint was used
    runs = [read_finished_run(f) for f in find_runs(out)]
    assert {r.group for r in runs} == {first["wandb_group"]}
    # the failed attempt exited before training started, so one run per stage, all in the first group
    assert sorted(r.job_type for r in runs) == sorted(STAGES) and all(r.finished for r in runs)
    assert "stage operator" not in p.stdout
    # scripts, logs and outputs live in the state dir: the user's tree stays clean for the next launch
    assert not (repo / "runs").exists() and git(repo, "status", "--porcelain") == ""
    assert out.is_relative_to(repo.parent / "home" / "slurm")
    shown = run_cli(["logs", second["id"], "--tail", "5"], cwd=repo)
    assert shown.returncode == 0, shown.stderr
    for j in jobs2:
        assert f"== {j['stage']} (job {j['job_id']}): {slurm.job_log(j)}" in shown.stdout
        assert slurm.job_log(j).read_text().splitlines()[-1] in shown.stdout


def sbatch_lines(text, stage):
    block = text.split(f"/{stage}/job.sbatch ---")[1].split("--- ")[0]
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", block, re.M))


def test_per_stage_resources_and_global_overrides_in_the_scripts(repo_factory):
    repo = repo_factory(pipeline_config())
    p = run_cli(["--target", "slurm", "--config", "configs/test.yaml", "--pipeline", "big", "--dry-run"], cwd=repo)
    assert p.returncode == 0, p.stderr
    op, dr = sbatch_lines(p.stdout, "operator"), sbatch_lines(p.stdout, "diffusion_residual")
    assert (op["time"], op["mem"], op["cpus-per-task"], op["gres"]) == ("02:00:00", "32G", "8", "gpu:1")
    assert (dr["time"], dr["mem"], dr["cpus-per-task"], dr["gres"]) == ("1-00:00:00", "48G", "4", "gpu:2")
    assert "DRY RUN" in p.stdout and not (repo / "runs").exists() and not (repo.parent / "home" / "slurm").exists()
    p = run_cli(
        [
            "--target",
            "slurm",
            "--config",
            "configs/test.yaml",
            "--pipeline",
            "big",
            "--dry-run",
            "--walltime",
            "12:00:00",
            "--memory",
            "96G",
            "--cpus",
            "16",
            "--gpus",
            "4",
            "--partition",
            "gpu",
        ],
        cwd=repo,
    )
    assert p.returncode == 0, p.stderr
    for stage in ("operator", "diffusion_residual"):
        lines = sbatch_lines(p.stdout, stage)
        assert (lines["time"], lines["mem"], lines["cpus-per-task"], lines["gres"], lines["partition"]) == (
            "12:00:00",
            "96G",
            "16",
            "gpu:4",
            "gpu",
        )
    group = re.search(r"W&B group ([^\s;]+)", p.stdout).group(1)
    assert p.stdout.count(f"export WANDB_RUN_GROUP={group}") == 2  # one group for every stage


def test_bad_input_is_one_line_and_submits_nothing(repo_factory, tmp_path):
    repo = repo_factory(pipeline_config())
    base = ["--target", "slurm", "--config", "configs/test.yaml"]
    no_sbatch = tmp_path / "bin"
    no_sbatch.mkdir()
    os.symlink(subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip(), no_sbatch / "git")
    cases = [
        (["--pipeline", "nope"], {}, "--pipeline nope: not one of ['big', 'smoke']"),
        (["--pipeline", "smoke", "--from-stage", "evaluate"], {}, "--from-stage evaluate: not a stage"),
        (["--pipeline", "smoke", "--walltime", "25h"], {}, "--walltime '25h'"),
        (["--pipeline", "smoke", "--memory", "lots"], {}, "--memory 'lots'"),
        (["--pipeline", "smoke", "--from-stage", "consistency_distill"], {}, "no earlier submission"),
        (["--pipeline", "smoke"], {"PATH": str(no_sbatch)}, "sbatch not found on PATH"),
    ]
    for args, env, needle in cases:
        p = run_cli([*base, *args], cwd=repo, env=env)
        assert p.returncode == 1 and needle in p.stderr and p.stderr.count("\n") == 1, (args, p.stderr)
    p = run_cli(["--pipeline", "smoke", "--config", "configs/test.yaml"], cwd=repo)
    assert p.returncode == 1 and "--pipeline: only with --target slurm" in p.stderr
    with Ledger() as ledger:
        assert ledger.launches() == []
    assert not list((repo.parent / "home").glob("slurm/**/job.sbatch")) and not (repo / "runs").exists()
    bad = pipeline_config()
    bad["slurm"]["pipelines"]["smoke"]["operator"]["memory"] = "4 gigs"
    repo2 = repo_factory(bad)
    p = run_cli([*base, "--dry-run"], cwd=repo2)
    assert p.returncode == 1 and "slurm.pipelines.smoke.operator.memory" in p.stderr


def test_each_stage_depends_afterok_on_the_previous_as_slurm_records_it(repo_factory, slurm_env):
    """Read back from slurmctld while the first stage holds: `after` would look the same on an idle node."""
    wait = 'while [ ! -f "$VL_OUT/go" ]; do sleep 0.2; done'
    cfg = stage_config([{"name": s, "command": wait} for s in STAGES], train={"profile": "smoke"})
    cfg["slurm"] = {"pipelines": {"smoke": {s: dict(RES) for s in STAGES}}}
    repo = repo_factory(cfg)
    submit(repo, "--pipeline", "smoke")
    row = last_launch()
    ids = [j["job_id"] for j in row["extra"]["jobs"]]
    try:
        for prev, job in zip(ids, ids[1:]):
            shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, check=True).stdout
            assert re.search(rf"Dependency=afterok:{prev}(\(|\s)", shown), shown
        assert (
            "Dependency=(null)"
            in subprocess.run(["scontrol", "show", "job", "-o", ids[0]], capture_output=True, text=True, check=True).stdout
        )
    finally:
        out = Path(row["extra"]["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "go").touch()
    try:
        states = slurm.wait(ids, timeout=SLURM_WAIT)
        assert all(s["state"] == "COMPLETED" for s in states.values()), states
    finally:
        subprocess.run(["scancel", *ids], capture_output=True)


def forgotten_jobs(root: Path, lasts: list) -> list[dict]:
    """Ledger job entries for ids this cluster never ran (scontrol: "Invalid job id specified", and there is
    no accounting for sacct): the world after MinJobAge has passed. Each gets the log its script would write."""
    jobs = []
    for i, (stage, last) in enumerate(zip(STAGES, lasts)):
        d = root / stage
        d.mkdir(parents=True)
        jid = str(990000 + i)
        if last is not None:
            lines = [f"[vast-launch] slurm job {jid} stage {stage}: start at=1.0 on node", "training"]
            lines += [f"[vast-launch] slurm job {jid} stage {stage}: {last} at=2.0"] if last else []
            (d / f"slurm-{jid}.out").write_text("\n".join(lines) + "\n")
        jobs.append({"stage": stage, "job_id": jid, "script": str(d / "job.sbatch")})
    return jobs


@pytest.mark.slow
def test_jobs_slurm_forgot_are_read_from_their_logs_and_a_dead_controller_ends_nothing(slurm_env, tmp_path):
    from slurm_cluster import free_port

    cases = {
        "t-20261124-090000-aaaa": (["exit 0", "exit 7", None], "failed", ["COMPLETED", "FAILED", "ENDED"]),
        "t-20261124-090000-bbbb": (["exit 0", "exit 0", "exit 0"], "completed", ["COMPLETED"] * 3),
        "t-20261124-090000-cccc": (["exit 0", "", None], "failed", ["COMPLETED", "ENDED", "ENDED"]),
    }
    with Ledger() as ledger:
        for launch_id, (lasts, _, _) in cases.items():
            ledger.create(
                launch_id,
                "queued",
                target="slurm",
                name="t",
                extra={"pipeline": "smoke", "jobs": forgotten_jobs(tmp_path / launch_id, lasts)},
            )
    for launch_id, (_, state, stages) in cases.items():
        st = json.loads(run_cli(["status", launch_id, "--json"], cwd=tmp_path).stdout)
        assert st["state"] == state and [s["state"] for s in st["stages"]] == stages, st
    assert (
        json.loads(run_cli(["status", "t-20261124-090000-aaaa", "--json"], cwd=tmp_path).stdout)["end_reason"]
        == "failed in stage diffusion_residual (FAILED, exit 7:0)"
    )
    assert "killed" in json.loads(run_cli(["status", "t-20261124-090000-cccc", "--json"], cwd=tmp_path).stdout)["stages"][1]["reason"]

    # The controller does not answer: nothing is concluded about the jobs, the launch stays open.
    dead = tmp_path / "dead.conf"
    dead.write_text(
        re.sub(r"^SlurmctldPort=\d+", f"SlurmctldPort={free_port()}", Path(slurm_env["SLURM_CONF"]).read_text(), flags=re.M)
    )
    with Ledger() as ledger:
        ledger.create(
            "t-20261124-090000-dddd",
            "queued",
            target="slurm",
            name="t",
            extra={"pipeline": "smoke", "jobs": forgotten_jobs(tmp_path / "dddd", ["exit 0", None, None])},
        )
    p = run_cli(["status", "t-20261124-090000-dddd", "--json"], cwd=tmp_path, env={"SLURM_CONF": str(dead)})
    st = json.loads(p.stdout)
    assert st["state"] == "queued" and st["end_reason"] is None, st
    assert all(s["state"] == "UNKNOWN" and s["reason"].startswith("scontrol: ") for s in st["stages"]), st


def test_rendered_sbatch_script_matches_the_reviewed_golden_file():
    """The exact script sbatch runs for one stage (GPU, partition, quoting of env values). After a deliberate
    change, review the diff and refresh with VL_UPDATE_GOLDEN=1."""
    script = slurm.render_script(
        job_name="burgers-operator",
        walltime="02:00:00",
        memory="16G",
        cpus=8,
        gpus=1,
        partition="gpu",
        log_dir=Path("/shared/vl/slurm/default/burgers-20261124-080000-ab12/operator"),
        workdir=Path("/shared/repo"),
        stage="operator",
        command='python -m ups.train --stage operator --out "$VL_OUT"',
        env={"WANDB_RUN_GROUP": "burgers-20261124-080000-ab12", "VL_PROFILE": "it's $(not) run", "VL_STAGE": "operator"},
    )
    golden = Path(__file__).parent / "golden" / "sbatch_stage.sh"
    if os.environ.get("VL_UPDATE_GOLDEN") == "1":
        golden.write_text(script)
    assert script == golden.read_text(), f"the rendered sbatch script differs from {golden}"
