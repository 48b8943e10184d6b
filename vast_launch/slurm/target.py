"""The SLURM target: one sbatch job per stage, chained afterok (launch.py), as the commands ask of it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import UserError
from ..targets.base import LaunchRequest, LaunchResult, Target
from .jobs import job_log


def _slurm():
    """The SLURM launch path: it needs the config's models (pydantic), which `cost` and `status` do not."""
    from . import launch

    return launch


class SlurmTarget(Target):
    name = "slurm"
    asks_before_renting = False  # a submission to a cluster one already has
    runs_stages_itself = True

    def launch(self, cfg, ledger, request: LaunchRequest, echo) -> LaunchResult:
        opts = dict(request.options)
        if request.resume:
            raise UserError("--resume: SLURM launches resume with --from-stage STAGE")
        if opts.pop("list_pipelines", None):
            for name, stages in _slurm().pipelines(cfg).items():
                echo(f"{name}:")
                for stage, r in stages.items():
                    echo(f"  {stage:<22} {r.walltime:>10} {r.memory:>6} {r.cpus:>3} CPU {r.gpus} GPU")
            return LaunchResult(launch_id="", state="listed")
        run = _slurm().launch(
            cfg,
            ledger,
            _slurm().SlurmOptions(dry_run=request.dry_run, profile=request.profile, wandb_mode=request.wandb_mode, **opts),
            echo,
        )
        return LaunchResult(launch_id=run["launch_id"], state=run["state"])

    def stages_now(self, ledger, row: dict) -> Optional[list]:
        """Its stages as the scheduler sees them now (the row brought up to date)."""
        return _slurm().refresh(ledger, row) if (row.get("extra") or {}).get("jobs") else None

    def logs(self, ledger, row, tail, follow, via, identity, echo) -> None:
        """Each stage's sbatch output, last `tail` lines, in pipeline order."""
        if follow:
            raise UserError("--follow: not for SLURM launches (`tail -f` the files named below)")
        jobs = (row.get("extra") or {}).get("jobs") or []
        if not jobs:
            raise UserError(f"launch {row['id']} submitted no jobs (see `vast-launch status {row['id']}`)")
        for job in jobs:
            path = job_log(job)
            echo(f"== {job['stage']} (job {job['job_id']}): {path}")
            echo(
                "\n".join(path.read_text(errors="replace").splitlines()[-tail:])
                if path.exists()
                else "(no output yet: the job has not started)"
            )

    def down(self, ledger, row, yes: bool, echo) -> str:
        cancelled = _slurm().cancel_launch(ledger, row)
        return f"cancelled jobs {', '.join(cancelled) or '(none were left)'}"

    def outputs_dir(self, row: dict) -> Optional[Path]:
        out = (row.get("extra") or {}).get("out_dir")
        return Path(out) if out and Path(out).is_dir() else None
