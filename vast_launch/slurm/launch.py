"""The SLURM target: one sbatch job per stage, chained with afterok, one W&B group per submission.

Each stage is an independent job with its own resources; a failed stage cancels its dependents
(`--kill-on-invalid-dep=yes`), and `--from-stage` resubmits from there, reusing the earlier
stages' outputs and W&B group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..config import LaunchConfig
from ..config_slurm import SlurmStage, slurm_memory, slurm_partition, slurm_walltime
from ..errors import UserError
from .jobs import (
    FINISHED_BAD,
    FINISHED_OK,
    StageJob,
    cancel,
    job_states,
    render_script,
    require,
    runs_root,
    state_from_log,
    submit,
    summarize,
)


def checked_overrides(overrides: dict) -> dict:
    """The command line's resource overrides, validated as the config's are (nothing reaches an #SBATCH line unchecked)."""
    out = dict(overrides)
    for opt, check in (("walltime", slurm_walltime), ("memory", slurm_memory), ("partition", slurm_partition)):
        if out.get(opt) is not None:
            try:
                out[opt] = check(out[opt])
            except ValueError as exc:
                raise UserError(f"--{opt} {out[opt]!r}: {exc}") from None
    return out


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
        stages = stages[stages.index(from_stage) :]
    return name, stages


def plan(
    cfg: LaunchConfig,
    repo_root: Path,
    pipeline: Optional[str],
    from_stage: Optional[str],
    overrides: dict,
    group: str,
    launch_id: str,
    profile: Optional[str],
    out_dir: Path,
    extra_env: Optional[dict] = None,
) -> tuple[str, list[StageJob]]:
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
            job_name=f"{cfg.name}-{name}-{stage}",
            walltime=walltime,
            memory=memory,
            cpus=cpus,
            gpus=gpus,
            partition=partition,
            log_dir=stage_dir,
            workdir=repo_root,
            stage=stage,
            command=commands[stage],
            env={
                **(extra_env or {}),
                "WANDB_RUN_GROUP": group,
                "WANDB_DIR": str(out_dir),
                "VL_LAUNCH_ID": launch_id,
                "VL_CONFIG": config_rel,
                "VL_PROFILE": profile or "",
                "VL_OUT": str(out_dir),
                "VL_STAGE": stage,
                "VL_PIPELINE": name,
            },
        )
        jobs.append(StageJob(stage, walltime, memory, cpus, gpus, partition, stage_dir / "job.sbatch", script))
    return name, jobs


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
    from ..gitcheck import git, repo_root
    from ..protocol import new_launch_id

    root = repo_root(Path(cfg.source).parent)
    commit = git(["rev-parse", "HEAD"], cwd=root, check=False)
    dirty = git(["status", "--porcelain", "--untracked-files=no"], cwd=root, check=False)
    profile = cfg.choose_profile(opts.profile)
    pipeline, _ = resolve(cfg, opts.pipeline, opts.from_stage)
    launch_id = new_launch_id(cfg.name)
    if opts.from_stage:
        earlier = latest_submission(ledger, pipeline, cfg.source)
        if earlier is None:
            raise UserError(f"--from-stage {opts.from_stage}: no earlier submission of pipeline {pipeline} in the ledger to continue")
        group, out_dir = earlier["wandb_group"], Path(earlier["extra"]["out_dir"])
    else:
        group = cfg.wandb.group or launch_id
        out_dir = runs_root() / pipeline / launch_id / "out"
    overrides = {"walltime": opts.walltime, "memory": opts.memory, "cpus": opts.cpus, "gpus": opts.gpus, "partition": opts.partition}
    extra_env = {"WANDB_MODE": opts.wandb_mode} if opts.wandb_mode else {}
    pipeline, jobs = plan(cfg, root, pipeline, opts.from_stage, overrides, group, launch_id, profile, out_dir, extra_env)
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
    ledger.create(
        launch_id,
        "submitting",
        name=cfg.name,
        config_path=cfg.source,
        config_hash=cfg.config_hash(),
        profile=profile,
        commit_sha=commit,
        repo=str(root),
        target="slurm",
        wandb_project=cfg.wandb.project,
        wandb_group=group,
        extra=extra,
    )
    echo(f"submitting pipeline {pipeline}: {chain}")
    try:
        submit(jobs, echo)
    except BaseException as exc:
        ledger.finish(launch_id, "failed", f"submission failed: {exc}")
        raise
    extra["jobs"] = [{"stage": j.stage, "job_id": j.job_id, "script": str(j.script_path)} for j in jobs]
    ledger.event(launch_id, "queued", {"jobs": extra["jobs"]}, extra=extra)
    echo(f"launch {launch_id}: jobs {', '.join(j.job_id for j in jobs)}; W&B group {group}")
    echo(
        f"logs in {runs_root() / pipeline / launch_id}/<stage>/slurm-<job id>.out; "
        f"`vast-launch logs {launch_id}`, `vast-launch status {launch_id}`"
    )
    return {"launch_id": launch_id, "state": "queued", "jobs": [j.as_dict() for j in jobs], "wandb_group": group}


def latest_submission(ledger, pipeline: str, config_path: Optional[str]) -> Optional[dict]:
    for row in reversed(ledger.launches()):
        extra = row.get("extra") or {}
        if (
            row["target"] == "slurm"
            and isinstance(extra, dict)
            and extra.get("pipeline") == pipeline
            and extra.get("jobs")
            and (config_path is None or row["config_path"] == config_path)
        ):
            return row
    return None


def refresh(ledger, row: dict) -> list[dict]:
    """Each stage's job state; the ledger row follows (completed / failed once every job has ended)."""
    jobs = (row.get("extra") or {}).get("jobs") or []
    states = job_states([j["job_id"] for j in jobs]) if jobs else {}
    per_stage = [
        (j["stage"], state_from_log(j, states.get(j["job_id"], {"state": "UNKNOWN", "reason": "", "exit_code": ""}))) for j in jobs
    ]
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
