"""SLURM's side: sbatch scripts, submission chained with afterok, and what the scheduler says of a job.

A job the controller has forgotten (MinJobAge passed, no accounting) is read from the exit line
its own script writes to its log.
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

from ..errors import UserError
from ..protocol import SLURM_EXIT_ECHO, SLURM_EXIT_LINE, SLURM_START_ECHO
from ..state_dir import default_home, private_dir

FINISHED_OK = {"COMPLETED"}


FINISHED_BAD = {
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "ENDED",
}  # ENDED: forgotten by SLURM with no exit line in its log


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


def render_script(
    job_name: str,
    walltime: str,
    memory: str,
    cpus: int,
    gpus: int,
    partition: Optional[str],
    log_dir: Path,
    workdir: Path,
    stage: str,
    command: str,
    env: dict,
) -> str:
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --time={walltime}",
        f"#SBATCH --mem={memory}",
        f"#SBATCH --cpus-per-task={cpus}",
        "#SBATCH --ntasks=1",
    ]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        f"#SBATCH --output={log_dir}/slurm-%j.out",
        f"#SBATCH --chdir={workdir}",
        "#SBATCH --kill-on-invalid-dep=yes",
        "set -o pipefail",
        *(f"export {k}={shlex.quote(str(v))}" for k, v in env.items()),
        f"export PYTHONPATH={shlex.quote(str(workdir / 'src'))}:{shlex.quote(str(workdir))}${{PYTHONPATH:+:$PYTHONPATH}}",
        SLURM_START_ECHO.format(stage=stage),
        command,
        "rc=$?",
        SLURM_EXIT_ECHO.format(stage=stage),
        "exit $rc",
        "",
    ]
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
            echo(
                f"  stage {job.stage:<22} job {job.job_id:<8} {job.walltime} {job.memory} {job.cpus} CPU "
                f"{job.gpus} GPU" + (f" after {done[-2].job_id}" if len(done) > 1 else "")
            )
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
        p = (
            subprocess.run(["scontrol", "show", "job", "-o", jid], capture_output=True, text=True, timeout=30)
            if shutil.which("scontrol")
            else None
        )
        if p is not None and p.returncode == 0 and "JobState=" in p.stdout:
            kv = dict(re.findall(r"(\w+)=(\S*)", p.stdout))
            out[jid] = {"state": kv.get("JobState", "UNKNOWN"), "reason": kv.get("Reason", ""), "exit_code": kv.get("ExitCode", "")}
            continue
        out[jid] = _sacct(jid)
        if p is not None and "Invalid job id" not in p.stderr and out[jid]["reason"] == FORGOTTEN:
            # The controller did not answer (down, or unreachable): that says nothing about the job.
            out[jid]["reason"] = f"scontrol: {(p.stderr.strip().splitlines() or ['no answer'])[-1]}"
    return out


def state_from_log(job: dict, state: dict) -> dict:
    """A job SLURM has forgotten (MinJobAge passed, no accounting) has ended: its log's last line, which
    the script writes, says how. No exit line: it was killed or never ran."""
    if state["state"] != "UNKNOWN" or state["reason"] != FORGOTTEN:
        return state
    log = job_log(job)
    text = log.read_text(errors="replace") if log.exists() else ""
    m = SLURM_EXIT_LINE.search(text)
    if m:
        code = int(m.group(1))
        return {
            "state": "COMPLETED" if code == 0 else "FAILED",
            "reason": "read from its log (SLURM forgot the job)",
            "exit_code": f"{code}:0",
        }
    why = "started, no exit line: killed" if "start at=" in text else "no log: it never ran"
    return {"state": "ENDED", "reason": f"SLURM forgot the job; {why}", "exit_code": ""}


def _sacct(jid: str) -> dict:
    if shutil.which("sacct"):
        p = subprocess.run(["sacct", "-n", "-P", "-X", "-j", jid, "-o", "State,ExitCode"], capture_output=True, text=True, timeout=30)
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
