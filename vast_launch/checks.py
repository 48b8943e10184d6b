"""The pre-launch check: used by `vast-launch check` (CI) and before every launch.

Each failure is one line that says what is wrong and how to fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from . import gitcheck
from .config import LaunchConfig
from .errors import UserError

if TYPE_CHECKING:
    from .targets.base import Target


@dataclass
class CheckReport:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    git: Optional[gitcheck.GitState] = None
    repo_url: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_json(self) -> dict:
        g = self.git
        return {
            "ok": self.ok,
            "failures": self.failures,
            "warnings": self.warnings,
            "commit": g.commit if g else None,
            "branch": g.branch if g else None,
            "repo": self.repo_url,
            "dirty_files": g.dirty if g else [],
        }


def wandb_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def run_checks(
    cfg: LaunchConfig,
    target: Target,
    allow_dirty: bool = False,
    wandb_mode: Optional[str] = None,
    cwd: str | Path = ".",
    dry_run: bool = False,
) -> CheckReport:
    report = CheckReport()
    try:
        state = gitcheck.inspect(cwd, remote=cfg.code.remote)
    except UserError as exc:
        report.failures.append(str(exc))
        return report
    report.git = state
    short = state.commit[:10]
    if state.branch is None:
        report.failures.append(
            f"detached HEAD at {short}: check out a branch and push it (the instance clones a commit the remote has)"
        )
    if state.remote_url is None:
        report.failures.append(
            f"no git remote '{cfg.code.remote}': add one and push "
            f"(git remote add {cfg.code.remote} URL && git push -u {cfg.code.remote} HEAD)"
        )
    elif state.remote_error:
        report.failures.append(f"cannot ask remote '{cfg.code.remote}' ({state.remote_url}): {state.remote_error}")
    elif not state.on_remote:
        report.failures.append(
            f"commit {short} is not on remote '{cfg.code.remote}': git push {cfg.code.remote} {state.branch or 'HEAD'}"
        )
    if state.dirty:
        listing = ", ".join(state.dirty[:5]) + (" ..." if len(state.dirty) > 5 else "")
        if allow_dirty:
            report.warnings.append(
                f"working tree has uncommitted changes ({listing}); they are NOT shipped: the instance runs commit {short}"
            )
        elif state.untracked and len(state.untracked) == len(state.dirty):
            report.failures.append(
                f"working tree has untracked files ({listing}): outputs of a local run? add them to .gitignore "
                "(`vast-launch init` does it for out/, runs/, checkpoints/...), commit them, or pass --allow-dirty"
            )
        else:
            report.failures.append(
                f"working tree has uncommitted changes ({listing}): commit and push them, "
                "or pass --allow-dirty to run the pushed commit without them"
            )
    if cfg.source and not gitcheck.tracked_in_head(state.root, Path(cfg.source)):
        report.failures.append(f"{cfg.source} is not committed in HEAD: the instance reads the config from the commit")
    if cfg.train.profile_schema:
        from .profile_check import profile_problems

        report.failures.extend(profile_problems(cfg, state.root))
    report.repo_url, config_url_had_credentials = gitcheck.public_url(cfg.code.repo) if cfg.code.repo else (state.remote_url, False)
    if (state.remote_had_credentials or config_url_had_credentials) and not os.environ.get("VAST_LAUNCH_GIT_TOKEN"):
        report.warnings.append(
            "the remote URL holds credentials: they are never sent to the instance; for a private repository set VAST_LAUNCH_GIT_TOKEN"
        )

    target.check(cfg, report, dry_run)
    if cfg.outputs.url:
        from .store import StoreSpec, problems

        spec = StoreSpec(cfg.outputs.url, cfg.outputs.endpoint_url, cfg.outputs.region)
        report.failures.extend(problems(spec, target.reaches_this_machine(), target.instances_are))
    mode = wandb_mode or cfg.wandb.mode
    if mode == "online" and not wandb_key_present():
        report.failures.append(
            "wandb.mode is online but WANDB_API_KEY is not set: export it, or set wandb.mode: offline "
            "(offline runs reach your machine only through an outputs store: outputs.url)"
        )
    elif mode == "offline" and target.disks_go_with_instances and not cfg.outputs.url:
        report.warnings.append(
            "wandb.mode is offline and there is no outputs store: the runs stay on the instance "
            "and are lost on teardown (set outputs.url)"
        )
    return report


def resume_problems(cfg: LaunchConfig, row: dict, target: Target, wandb_mode: Optional[str]) -> list[str]:
    """Why another instance of an existing launch cannot start, one line each: it runs the launch's own
    commit (which the remote must still have) from what the launch's outputs store holds."""
    from .store import StoreSpec, problems

    found = []
    if row.get("target") != target.name:
        found.append(f"{row['id']} ran on target {row.get('target')}, not {target.name}")
    spec = StoreSpec.of_row(row)
    if spec is None:
        found.append(f"{row['id']} has no outputs store to resume from (outputs.url was not set when it was launched)")
    else:
        found.extend(problems(spec, target.reaches_this_machine(row.get("provider_url")), target.instances_are))
    try:
        root = gitcheck.repo_root(Path(cfg.source or ".").parent)
        on_remote, error = gitcheck.commit_on_remote(root, cfg.code.remote, row["commit_sha"])
    except UserError as exc:
        on_remote, error = False, str(exc)
    if not on_remote:
        found.append(
            f"commit {row['commit_sha'][:10]} of {row['id']} is not on remote '{cfg.code.remote}'" + (f": {error}" if error else "")
        )
    credentials = CheckReport()
    target.check(cfg, credentials)
    found.extend(credentials.failures)
    if (wandb_mode or cfg.wandb.mode) == "online" and not wandb_key_present():
        found.append("wandb.mode is online but WANDB_API_KEY is not set: export it, or resume with --wandb-mode offline")
    return found
