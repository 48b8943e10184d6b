"""`launch` (the default command), `check` and `offers`."""

from __future__ import annotations

import json
import sys

import click

from .. import targets
from ..errors import UserError
from .common import config_option, guarded, ledger, load, settle_rows


# --- launch ---------------------------------------------------------------------------------
@click.command()
@config_option
@click.option(
    "--auto-shutdown/--no-auto-shutdown",
    default=None,
    help="destroy the instance when training ends (success or failure); default: "
    "lifecycle.auto_shutdown. The hard deadline (lifecycle.max_hours) applies either way",
)
@click.option("--dry-run", is_flag=True, help="print the offer, create payload and onstart (secrets redacted); rent nothing")
@click.option("--follow/--detach", default=None, help="stream logs until the instance is gone (default: follow with --local)")
@click.option("--profile", default=None, help="which train.profiles entry of the config the stages get ($VL_PROFILE)")
@click.option("--allow-dirty", is_flag=True, help="launch with uncommitted changes; the instance runs the pushed commit without them")
@click.option(
    "--wandb-mode",
    type=click.Choice(["online", "offline", "disabled"]),
    default=None,
    help="override wandb.mode (default offline with --local)",
)
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="extra environment for the instance (not for secrets: use WANDB_API_KEY / VAST_LAUNCH_GIT_TOKEN)",
)
@click.option("--target", type=click.Choice(targets.names()), default=None, help=f"where to run (default: {targets.DEFAULT})")
@click.option(
    "--poll-seconds",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01, 600),
    help="time between status/log polls while following; cost timelines are this precise",
)
@click.option(
    "--heartbeat-seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="while following: a progress line (stage, its run time, cost so far) after this many seconds without output; 0: none",
)
@click.option("--yes", "-y", is_flag=True, help="do not ask before renting")
@click.option(
    "--resume",
    "resume_id",
    default=None,
    metavar="ID",
    help="another instance for launch ID (same commit, W&B group and outputs): finished stages are skipped, "
    "a stage resumes from its last checkpoint in the outputs store",
)
@targets.launch_options
@guarded
def launch(config, target, env_pairs, yes, resume_id, **given):
    """Check, pick the best offer, rent it, run the stages (the default command).

    With --target slurm, each stage becomes its own sbatch job, chained with afterok.

    \b
    Exit codes: 0 all stages done; a failed stage's own exit code; 124 the in-instance watchdog
    ended the run (deadline, budget or idle); 3 the instance ended without a result; 130
    interrupted (Ctrl-C, SIGTERM, SIGHUP); 1 a user error (nothing rented); 2 bad usage.

    \b
    Examples:
      vast-launch --local --auto-shutdown --config configs/burgers.yaml --profile smoke
      vast-launch --auto-shutdown --config configs/burgers.yaml --dry-run
      vast-launch --resume burgers-20261122-120000-ab12        # on a new instance, from its outputs store
      vast-launch --target slurm --config configs/burgers.yaml --pipeline full --memory 96G
      vast-launch --target slurm --config configs/burgers.yaml --pipeline full --from-stage diffusion_residual
    """
    from ..interrupts import signals_interrupt
    from ..protocol import EXIT_INTERRUPTED
    from ..targets.base import LaunchRequest

    chosen, own = targets.chosen(target, given)
    request = LaunchRequest(**{k: v for k, v in given.items() if k in LAUNCH_REQUEST_KEYS}, options=own)
    request.extra_env = _extra_env(env_pairs)
    if sys.stdin.isatty():
        request.ask_destroy = _ask_destroy
        if not yes and chosen.asks_before_renting:
            request.confirm = lambda question: click.confirm(question, default=True)
    with signals_interrupt():
        request.resume = _resumed_row(resume_id, chosen) if resume_id else None
        cfg = load(config or (request.resume["config_path"] if request.resume else None))
        with ledger(create=True) as led:
            result = chosen.launch(cfg, led, request, click.echo)
    if result.exit_code == EXIT_INTERRUPTED:
        click.echo("interrupted", err=True)
    sys.exit(result.exit_code)


LAUNCH_REQUEST_KEYS = (
    "auto_shutdown",
    "dry_run",
    "follow",
    "profile",
    "allow_dirty",
    "wandb_mode",
    "poll_seconds",
    "heartbeat_seconds",
)


def _ask_destroy() -> bool:
    """After Ctrl-C while following: destroy (the default) or detach. Another Ctrl-C, or a closed terminal,
    answers destroy. The wait wakes every 0.2 s: a signal the kernel hands to another thread (the log reader)
    must not leave this one blocked in a read."""
    import select

    from ..interrupts import ctrl_c_at_a_prompt

    try:
        with ctrl_c_at_a_prompt():
            click.echo("\nDestroy the instance now? (no: detach and leave it running, its teardown armed) [Y/n]: ", nl=False)
            while True:
                if not select.select([sys.stdin], [], [], 0.2)[0]:
                    continue
                answer = sys.stdin.readline()
                if not answer:  # end of input: the terminal went away
                    break
                if answer.strip().lower() in ("", "y", "yes"):
                    return True
                if answer.strip().lower() in ("n", "no"):
                    return False
                click.echo("Destroy the instance now? Answer y or n [Y/n]: ", nl=False)
    except KeyboardInterrupt:
        pass
    click.echo("")
    return True


def _extra_env(pairs) -> dict:
    """--env KEY=VALUE pairs; a name the launch sets itself is refused (the value is never echoed)."""
    from ..protocol import reserved_env

    extra = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--env {key if sep else '...'}: expected KEY=VALUE with KEY a name (letters, digits, _)")
        if reserved_env(key):
            raise UserError(
                f"--env {key}: set by the launch itself (VL_*, CONTAINER_*, VAST_*, WANDB_RUN_GROUP, WANDB_MODE, "
                "secrets...); secrets come from your environment: WANDB_API_KEY, VAST_LAUNCH_GIT_TOKEN, AWS_*"
            )
        if "\n" in value or "\0" in value:
            raise UserError(f"--env {key}: the value must be one line")
        extra[key] = value
    return extra


def _resumed_row(resume_id: str, target) -> dict:
    """The launch to resume: known here, on this target, and with no instance of it still there (settled first)."""
    from ..states import TERMINAL

    with ledger() as led:
        row = led.find(resume_id)
        if row is None:
            raise UserError(f"--resume {resume_id}: no launch matches (see `vast-launch status`)")
        if row["target"] != target.name:
            flag = targets.FLAGS.get(row["target"], (f"--target {row['target']}",))[0]
            raise UserError(f"--resume {row['id']}: it ran on target {row['target']} (launch it with {flag})")
        settle_rows(led, [row])
        row = led.get(row["id"])
        if row["state"] not in TERMINAL and row["state"] != "gone":  # gone: its instance is, waiting for recovery
            raise UserError(f"--resume {row['id']}: it is still {row['state']}; end it first (`vast-launch down {row['id']}`)")
        return row


# --- check ----------------------------------------------------------------------------------
@click.command()
@config_option
@click.option("--target", type=click.Choice(targets.names()), default=None, help=f"the launch's target (default: {targets.DEFAULT})")
@targets.target_flags
@click.option(
    "--wandb-mode",
    type=click.Choice(["online", "offline", "disabled"]),
    default=None,
    help="the W&B mode the launch will use (default: the target's, else wandb.mode)",
)
@click.option("--allow-dirty", is_flag=True, help="uncommitted changes are a warning, not a failure")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def check(config, target, wandb_mode, allow_dirty, as_json, **flags):
    """Pre-launch check for CI: config valid, commit pushed, tree clean, credentials present.

    Exits 1 with one line per failure.

    \b
    Example:
      vast-launch check --config configs/burgers.yaml --json
    """
    from ..checks import CheckReport, run_checks

    try:
        chosen, _ = targets.chosen(target, flags)
        cfg = load(config)
        report = run_checks(cfg, chosen, allow_dirty, wandb_mode or chosen.default_wandb_mode)
    except UserError as exc:
        report = CheckReport(failures=str(exc).splitlines())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for w in report.warnings:
            click.echo(f"warning: {w}", err=True)
        for f in report.failures:
            click.echo(f"check failed: {f}", err=True)
        if report.ok:
            click.echo(f"ok: commit {report.git.commit[:10]} is on the remote; ready to launch")
    sys.exit(0 if report.ok else 1)


# --- offers ---------------------------------------------------------------------------------
@click.command()
@config_option
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@guarded
def offers(config, limit, as_json):
    """Show the ranked offers for the config's resources and why each ranks where it does.

    \b
    Example:
      vast-launch offers --config configs/burgers.yaml --limit 5
    """
    query, ranked = targets.get(targets.DEFAULT).offers(load(config), limit)
    if as_json:
        click.echo(json.dumps([{"rank": r.rank, "why": r.reason, **r.offer} for r in ranked], indent=2))
        return
    click.echo(f"query: {query}")
    if not ranked:
        click.echo("no offer fits: relax resources.* in the config")
    for r in ranked:
        o = r.offer
        click.echo(
            f"{r.rank:>3}. offer {o['id']:<9} {o.get('gpu_name')} x{o.get('num_gpus')}  "
            f"${float(o.get('dph_total') or 0):.3f}/h  {o.get('geolocation') or ''}  -- {r.reason}"
        )
