"""The SLURM target: one sbatch job per stage, chained with afterok, one W&B group per submission.

Each stage is an independent job with its own resources; a failed stage cancels its dependents
(`--kill-on-invalid-dep=yes`), and `--from-stage` resubmits from there, reusing the earlier
stages' outputs and W&B group.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from .config import LaunchConfig, SlurmStage, slurm_memory, slurm_walltime
from .errors import UserError
from .ledger import default_home, private_dir

FINISHED_OK = {"COMPLETED"}
FINISHED_BAD = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
                "ENDED"}  # ENDED: forgotten by SLURM with no exit line in its log


def checked_overrides(overrides: dict) -> dict:
    """The command line's resource overrides, with walltime and memory validated as the config's are."""
    out = dict(overrides)
    for opt, check in (("walltime", slurm_walltime), ("memory", slurm_memory)):
        if out.get(opt) is not None:
            try:
                out[opt] = check(out[opt])
            except ValueError as exc:
                raise UserError(f"--{opt} {out[opt]!r}: {exc}") from None
    return out


@dataclass
class StageJob:
    stage: str
    walltime: str
    memory: str
    cpus: int
    gpus: int
    partition: Optional[str]
    script_path: Path
    script: str
    job_id: Optional[str] = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["script_path"] = str(self.script_path)
        return d


def pipelines(cfg: LaunchConfig) -> dict[str, dict[str, SlurmStage]]:
    """The config's pipelines; without any, one pipeline 'default' of all stages with default resources."""
    if cfg.slurm.pipelines:
        return cfg.slurm.pipelines
    return {"default": {s.name: SlurmStage() for s in cfg.stages}}


def resolve(cfg: LaunchConfig, pipeline: Optional[str], from_stage: Optional[str]) -> tuple[str, list[str]]:
    """The pipeline's name and the stages to submit."""
    pipes = pipelines(cfg)
    name = pipeline or next(iter(pipes))
    if name not in pipes:
        raise UserError(f"--pipeline {name}: not one of {sorted(pipes)} (slurm.pipelines in {cfg.source})")
    stages = list(pipes[name])
    if from_stage is not None:
        if from_stage not in stages:
            raise UserError(f"--from-stage {from_stage}: not a stage of pipeline {name} ({', '.join(stages)})")
        stages = stages[stages.index(from_stage):]
    return name, stages


def plan(cfg: LaunchConfig, repo_root: Path, pipeline: Optional[str], from_stage: Optional[str],
         overrides: dict, group: str, launch_id: str, profile: str, out_dir: Path,
         extra_env: Optional[dict] = None) -> tuple[str, list[StageJob]]:
    """The sbatch script of every stage to submit (from from_stage on), nothing written yet."""
    pipes = pipelines(cfg)
    name, stages = resolve(cfg, pipeline, from_stage)
    overrides = checked_overrides(overrides)
    commands = {s.name: s.render_command() for s in cfg.stages}
    config_rel = Path(cfg.source).resolve().relative_to(repo_root.resolve()).as_posix()
    jobs = []
    for stage in stages:
        res = pipes[name][stage]
        walltime = overrides.get("walltime") or res.walltime
        memory = overrides.get("memory") or res.memory
        cpus = overrides.get("cpus") or res.cpus
        gpus = overrides["gpus"] if overrides.get("gpus") is not None else res.gpus
        partition = overrides.get("partition") or cfg.slurm.partition
        stage_dir = runs_root() / name / launch_id / stage
        script = render_script(
            job_name=f"{cfg.name}-{name}-{stage}", walltime=walltime, memory=memory, cpus=cpus, gpus=gpus,
            partition=partition, log_dir=stage_dir, workdir=repo_root, stage=stage, command=commands[stage],
            env={**(extra_env or {}), "WANDB_RUN_GROUP": group, "WANDB_DIR": str(out_dir), "VL_LAUNCH_ID": launch_id,
                 "VL_CONFIG": config_rel, "VL_PROFILE": profile, "VL_OUT": str(out_dir), "VL_STAGE": stage,
                 "VL_PIPELINE": name})
        jobs.append(StageJob(stage, walltime, memory, cpus, gpus, partition, stage_dir / "job.sbatch", script))
    return name, jobs


def render_script(job_name: str, walltime: str, memory: str, cpus: int, gpus: int, partition: Optional[str],
                  log_dir: Path, workdir: Path, stage: str, command: str, env: dict) -> str:
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={job_name}",
             f"#SBATCH --time={walltime}",
             f"#SBATCH --mem={memory}",
             f"#SBATCH --cpus-per-task={cpus}",
             "#SBATCH --ntasks=1"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [f"#SBATCH --output={log_dir}/slurm-%j.out",
              f"#SBATCH --chdir={workdir}",
              "#SBATCH --kill-on-invalid-dep=yes",
              "set -o pipefail",
              *(f"export {k}={shlex.quote(str(v))}" for k, v in env.items()),
              f'export PYTHONPATH={shlex.quote(str(workdir / "src"))}:{shlex.quote(str(workdir))}${{PYTHONPATH:+:$PYTHONPATH}}',
              f'echo "[vast-launch] slurm job $SLURM_JOB_ID stage {stage}: start at=$(date +%s.%N) on $(hostname)"',
              command,
              "rc=$?",
              f'echo "[vast-launch] slurm job $SLURM_JOB_ID stage {stage}: exit $rc at=$(date +%s.%N)"',
              "exit $rc", ""]
    return "\n".join(lines)


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise UserError(f"{binary} not found on PATH: run this on a SLURM login node (or install slurm-client)")
    return path


def runs_root() -> Path:
    """Scripts, logs and outputs of SLURM launches: the state dir, never the user's working tree (an
    untracked runs/ there would fail the next launch's clean-tree check). It must be on a filesystem the
    compute nodes share; $HOME usually is, else set VAST_LAUNCH_HOME."""
    return default_home() / "slurm"


def job_log(job: dict) -> Path:
    """Where sbatch writes a ledger job's output (`#SBATCH --output` beside its script)."""
    return Path(job["script"]).parent / f"slurm-{job['job_id']}.out"


def submit(jobs: list[StageJob], echo: Callable[[str], None]) -> list[StageJob]:
    """Write and submit every script, each after the previous with afterok; all or nothing."""
    sbatch = require("sbatch")
    previous: Optional[str] = None
    done: list[StageJob] = []
    try:
        for job in jobs:
            private_dir(job.script_path.parent)
            job.script_path.write_text(job.script)
            args = [sbatch, "--parsable"]
            if previous:
                args.append(f"--dependency=afterok:{previous}")
            p = subprocess.run([*args, str(job.script_path)], capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                raise UserError(f"sbatch refused stage {job.stage}: {p.stderr.strip() or p.stdout.strip()}")
            job.job_id = p.stdout.strip().split(";")[0]
            previous = job.job_id
            done.append(job)
            echo(f"  stage {job.stage:<22} job {job.job_id:<8} {job.walltime} {job.memory} {job.cpus} CPU "
                 f"{job.gpus} GPU" + (f" after {done[-2].job_id}" if len(done) > 1 else ""))
    except BaseException:
        cancel([j.job_id for j in done if j.job_id])
        raise
    return done


def cancel(job_ids: list[str]) -> None:
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)


FORGOTTEN = "not known to scontrol or sacct any more"


def job_states(job_ids: list[str]) -> dict[str, dict]:
    """State, reason and exit code of each job: squeue/scontrol, else sacct (when accounting exists)."""
    out: dict[str, dict] = {}
    for jid in job_ids:
        p = subprocess.run(["scontrol", "show", "job", "-o", jid], capture_output=True, text=True, timeout=30) \
            if shutil.which("scontrol") else None
        if p is not None and p.returncode == 0 and "JobState=" in p.stdout:
            kv = dict(re.findall(r"(\w+)=(\S*)", p.stdout))
            out[jid] = {"state": kv.get("JobState", "UNKNOWN"), "reason": kv.get("Reason", ""),
                        "exit_code": kv.get("ExitCode", "")}
            continue
        out[jid] = _sacct(jid)
        if p is not None and "Invalid job id" not in p.stderr and out[jid]["reason"] == FORGOTTEN:
            # The controller did not answer (down, or unreachable): that says nothing about the job.
            out[jid]["reason"] = f"scontrol: {(p.stderr.strip().splitlines() or ['no answer'])[-1]}"
    return out


def _from_log(job: dict, state: dict) -> dict:
    """A job SLURM has forgotten (MinJobAge passed, no accounting) has ended: its log's last line, which
    the script writes, says how. No exit line: it was killed or never ran."""
    if state["state"] != "UNKNOWN" or state["reason"] != FORGOTTEN:
        return state
    log = job_log(job)
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.search(r"\] slurm job \S+ stage \S+: exit (\d+) at=", text)
    if m:
        code = int(m.group(1))
        return {"state": "COMPLETED" if code == 0 else "FAILED", "reason": "read from its log (SLURM forgot the job)",
                "exit_code": f"{code}:0"}
    why = "started, no exit line: killed" if "start at=" in text else "no log: it never ran"
    return {"state": "ENDED", "reason": f"SLURM forgot the job; {why}", "exit_code": ""}


def _sacct(jid: str) -> dict:
    if shutil.which("sacct"):
        p = subprocess.run(["sacct", "-n", "-P", "-X", "-j", jid, "-o", "State,ExitCode"], capture_output=True,
                           text=True, timeout=30)
        line = p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else ""
        if line:
            state, _, code = line.partition("|")
            return {"state": state.split()[0], "reason": "", "exit_code": code}
    return {"state": "UNKNOWN", "reason": FORGOTTEN, "exit_code": ""}


def summarize(stage_states: list[tuple[str, dict]]) -> tuple[str, Optional[str]]:
    """(ledger state, end reason or None while jobs remain) of a submission."""
    states = [s["state"] for _, s in stage_states]
    if all(s in FINISHED_OK for s in states):
        return "completed", "completed: every stage's job finished"
    for stage, s in stage_states:
        if s["state"] in FINISHED_BAD and s["reason"] != "DependencyNeverSatisfied":
            if all(x in FINISHED_OK | FINISHED_BAD for x in states):
                return "failed", f"failed in stage {stage} ({s['state']}, exit {s['exit_code']})"
            return "failing", None
    if any(s == "RUNNING" for s in states):
        return "running", None
    if all(s in FINISHED_OK | FINISHED_BAD for s in states):
        return "failed", "cancelled"
    return "queued", None


def wait(job_ids: list[str], timeout: float, poll: float = 0.5) -> dict[str, dict]:
    deadline = time.time() + timeout
    while True:
        states = job_states(job_ids)
        if all(s["state"] in FINISHED_OK | FINISHED_BAD for s in states.values()) or time.time() > deadline:
            return states
        time.sleep(poll)


# --- a submission, recorded in the ledger ----------------------------------------------------------
@dataclass
class SlurmOptions:
    pipeline: Optional[str] = None
    from_stage: Optional[str] = None
    dry_run: bool = False
    profile: Optional[str] = None
    wandb_mode: Optional[str] = None
    walltime: Optional[str] = None
    memory: Optional[str] = None
    cpus: Optional[int] = None
    gpus: Optional[int] = None
    partition: Optional[str] = None


def launch(cfg: LaunchConfig, ledger, opts: SlurmOptions, echo: Callable[[str], None]) -> dict:
    from .gitcheck import git, repo_root
    from .instance_env import new_launch_id

    root = repo_root(Path(cfg.source).parent)
    commit = git(["rev-parse", "HEAD"], cwd=root, check=False)
    dirty = git(["status", "--porcelain", "--untracked-files=no"], cwd=root, check=False)
    profile = opts.profile or cfg.train.profile
    if cfg.train.profiles and profile not in cfg.train.profiles:
        raise UserError(f"--profile {profile}: not one of {sorted(cfg.train.profiles)} (train.profiles)")
    pipeline, _ = resolve(cfg, opts.pipeline, opts.from_stage)
    launch_id = new_launch_id(cfg.name)
    if opts.from_stage:
        earlier = latest_submission(ledger, pipeline, cfg.source)
        if earlier is None:
            raise UserError(f"--from-stage {opts.from_stage}: no earlier submission of pipeline {pipeline} "
                            "in the ledger to continue")
        group, out_dir = earlier["wandb_group"], Path(earlier["extra"]["out_dir"])
    else:
        group = cfg.wandb.group or launch_id
        out_dir = runs_root() / pipeline / launch_id / "out"
    overrides = {"walltime": opts.walltime, "memory": opts.memory, "cpus": opts.cpus, "gpus": opts.gpus,
                 "partition": opts.partition}
    extra_env = {"WANDB_MODE": opts.wandb_mode} if opts.wandb_mode else {}
    pipeline, jobs = plan(cfg, root, pipeline, opts.from_stage, overrides, group, launch_id, profile, out_dir,
                          extra_env)
    chain = " -> ".join(j.stage for j in jobs)
    if opts.dry_run:
        echo(f"DRY RUN: nothing is submitted. Pipeline {pipeline}: {chain} (each after the previous, afterok)")
        echo(f"W&B group {group}; outputs in {out_dir}")
        for job in jobs:
            echo(f"--- {job.script_path} ---")
            echo(job.script)
        return {"launch_id": launch_id, "state": "dry-run", "jobs": [j.as_dict() for j in jobs], "wandb_group": group}
    require("sbatch")
    if dirty:
        echo("WARNING: uncommitted changes: the jobs run this working tree, not only commit " + commit[:10])
    extra = {"pipeline": pipeline, "out_dir": str(out_dir), "from_stage": opts.from_stage, "dirty": bool(dirty)}
    ledger.create(launch_id, "submitting", name=cfg.name, config_path=cfg.source, config_hash=cfg.config_hash(),
                  profile=profile, commit_sha=commit, repo=str(root), target="slurm", wandb_project=cfg.wandb.project,
                  wandb_group=group, extra=extra)
    echo(f"submitting pipeline {pipeline}: {chain}")
    try:
        submit(jobs, echo)
    except BaseException as exc:
        ledger.finish(launch_id, "failed", f"submission failed: {exc}")
        raise
    extra["jobs"] = [{"stage": j.stage, "job_id": j.job_id, "script": str(j.script_path)} for j in jobs]
    ledger.event(launch_id, "queued", {"jobs": extra["jobs"]}, extra=extra)
    echo(f"launch {launch_id}: jobs {', '.join(j.job_id for j in jobs)}; W&B group {group}")
    echo(f"logs in {runs_root() / pipeline / launch_id}/<stage>/slurm-<job id>.out; "
         f"`vast-launch logs {launch_id}`, `vast-launch status {launch_id}`")
    return {"launch_id": launch_id, "state": "queued", "jobs": [j.as_dict() for j in jobs], "wandb_group": group}


def latest_submission(ledger, pipeline: str, config_path: Optional[str]) -> Optional[dict]:
    for row in reversed(ledger.launches()):
        extra = row.get("extra") or {}
        if row["target"] == "slurm" and isinstance(extra, dict) and extra.get("pipeline") == pipeline \
                and extra.get("jobs") and (config_path is None or row["config_path"] == config_path):
            return row
    return None


def refresh(ledger, row: dict) -> list[dict]:
    """Each stage's job state; the ledger row follows (completed / failed once every job has ended)."""
    jobs = (row.get("extra") or {}).get("jobs") or []
    states = job_states([j["job_id"] for j in jobs]) if jobs else {}
    per_stage = [(j["stage"], _from_log(j, states.get(j["job_id"], {"state": "UNKNOWN", "reason": "", "exit_code": ""})))
                 for j in jobs]
    if jobs and row["state"] not in ("completed", "failed", "cancelled"):
        state, reason = summarize(per_stage)
        if reason is not None:
            ledger.finish(row["id"], state, reason)
        elif state != row["state"]:
            ledger.event(row["id"], state)
    return [{"stage": stage, "job_id": j["job_id"], **s} for (stage, s), j in zip(per_stage, jobs)]


def cancel_launch(ledger, row: dict) -> list[str]:
    """scancel the jobs of a submission that have not ended."""
    jobs = (row.get("extra") or {}).get("jobs") or []
    require("scancel")
    states = job_states([j["job_id"] for j in jobs])
    live = [jid for jid, s in states.items() if s["state"] not in FINISHED_OK | FINISHED_BAD]
    cancel(live)
    ledger.finish(row["id"], "cancelled", f"cancelled by `vast-launch down` (jobs {', '.join(live) or 'none left'})")
    return live
