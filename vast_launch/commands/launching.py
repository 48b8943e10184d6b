"""`launch` (the default command), `check` and `offers`."""

from __future__ import annotations

import json
import os
import sys

import click

from ..errors import UserError
from .common import _fail, _ledger, _load, _provider_for, _run, config_option


# --- launch ---------------------------------------------------------------------------------
@click.command()
@config_option
@click.option(
    "--auto-shutdown/--no-auto-shutdown",
    default=None,
    help="destroy the instance when training ends (success or failure); default: "
    "lifecycle.auto_shutdown. The hard deadline (lifecycle.max_hours) applies either way",
)
@click.option("--local", is_flag=True, help="rent this machine from the embedded local cloud (no Vast account)")
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
@click.option("--price", type=float, default=None, help="--local only: the local cloud's $/h")
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="extra environment for the instance (not for secrets: use WANDB_API_KEY / VAST_LAUNCH_GIT_TOKEN)",
)
@click.option("--target", type=click.Choice(["vast", "slurm"]), default="vast", show_default=True)
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
@click.option("--pipeline", default=None, help="--target slurm: which slurm.pipelines entry (default: the first)")
@click.option("--list-pipelines", is_flag=True, help="--target slurm: list the pipelines and their resources")
@click.option(
    "--from-stage", default=None, help="--target slurm: resubmit from this stage, reusing the last submission's outputs and W&B group"
)
@click.option("--walltime", default=None, metavar="HH:MM:SS", help="--target slurm: every stage's time limit")
@click.option("--memory", default=None, metavar="SIZE", help="--target slurm: every stage's memory, e.g. 96G")
@click.option("--cpus", default=None, type=click.IntRange(1), help="--target slurm: every stage's CPUs")
@click.option("--gpus", default=None, type=click.IntRange(0), help="--target slurm: every stage's GPUs")
@click.option("--partition", default=None, help="--target slurm: partition for every stage")
def launch(
    config,
    auto_shutdown,
    local,
    dry_run,
    follow,
    profile,
    allow_dirty,
    wandb_mode,
    price,
    env_pairs,
    target,
    poll_seconds,
    heartbeat_seconds,
    yes,
    resume_id,
    pipeline,
    list_pipelines,
    from_stage,
    walltime,
    memory,
    cpus,
    gpus,
    partition,
):
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
    if target == "slurm":
        return _launch_slurm(
            config,
            pipeline,
            list_pipelines,
            from_stage,
            dry_run,
            profile,
            wandb_mode,
            dict(walltime=walltime, memory=memory, cpus=cpus, gpus=gpus, partition=partition),
        )
    slurm_only = {
        "--pipeline": pipeline,
        "--list-pipelines": list_pipelines or None,
        "--from-stage": from_stage,
        "--walltime": walltime,
        "--memory": memory,
        "--cpus": cpus,
        "--gpus": gpus,
        "--partition": partition,
    }
    given = [k for k, v in slurm_only.items() if v is not None]
    if given:
        _fail(f"{', '.join(given)}: only with --target slurm")

    def go():
        from ..vast.launcher import Launcher, LaunchOptions

        resumed = _resumed_row(resume_id, local) if resume_id else None
        cfg = _load(config or (resumed["config_path"] if resumed else None))
        if price is not None and price < 0:
            raise UserError(f"--price: must be >= 0 (got {price})")
        extra = _extra_env(env_pairs)
        opts = LaunchOptions(
            auto_shutdown=auto_shutdown,
            dry_run=dry_run,
            follow=follow,
            profile=profile,
            allow_dirty=allow_dirty,
            wandb_mode=wandb_mode,
            extra_env=extra,
            poll_seconds=poll_seconds,
            heartbeat_seconds=heartbeat_seconds,
        )
        if sys.stdin.isatty():
            opts.ask_destroy = _ask_destroy
            if not yes and not local:
                opts.confirm = lambda question: click.confirm(question, default=True)
        if local:
            return _launch_local(cfg, opts, price or 0.0, resumed)
        from ..credentials import find_api_key

        provider = None if dry_run and not find_api_key() else _provider_for(url=os.environ.get("VAST_URL"))
        with _ledger(create=True) as ledger:
            launcher = Launcher(cfg, provider, ledger, opts, echo=click.echo)
            return launcher.resume(ledger.get(resumed["id"])) if resumed else launcher.run()

    from ..interrupts import signals_interrupt
    from ..protocol import EXIT_INTERRUPTED

    with signals_interrupt():
        result = _run(go)
    if result is not None and result.exit_code == EXIT_INTERRUPTED:
        click.echo("interrupted", err=True)
    sys.exit(result.exit_code if result is not None else 0)


def _launch_slurm(config, pipeline, list_pipelines, from_stage, dry_run, profile, wandb_mode, overrides):
    def go():
        from ..slurm import launch as slurm

        cfg = _load(config)
        if list_pipelines:
            for name, stages in slurm.pipelines(cfg).items():
                click.echo(f"{name}:")
                for stage, r in stages.items():
                    click.echo(f"  {stage:<22} {r.walltime:>10} {r.memory:>6} {r.cpus:>3} CPU {r.gpus} GPU")
            return
        opts = slurm.SlurmOptions(
            pipeline=pipeline, from_stage=from_stage, dry_run=dry_run, profile=profile, wandb_mode=wandb_mode, **overrides
        )
        with _ledger(create=True) as ledger:
            return slurm.launch(cfg, ledger, opts, click.echo)

    _run(go)


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


def _resumed_row(resume_id: str, local: bool) -> dict:
    """The launch to resume: known here, and with no instance of it still there (settled first)."""
    from .common import _settle

    with _ledger() as ledger:
        row = ledger.find(resume_id)
        if row is None:
            raise UserError(f"--resume {resume_id}: no launch matches (see `vast-launch status`)")
        if row["target"] != ("local" if local else "vast"):
            hint = "add --local" if row["target"] == "local" else "drop --local" if local else f"it ran on {row['target']}"
            raise UserError(f"--resume {row['id']}: it ran on target {row['target']} ({hint})")
        if row["target"] != "local":
            _settle(ledger, [row])
        row = ledger.get(row["id"])
        from ..states import TERMINAL

        if row["state"] not in TERMINAL:
            raise UserError(f"--resume {row['id']}: it is still {row['state']}; end it first (`vast-launch down {row['id']}`)")
        return row


def _launch_local(cfg, opts, price: float, resumed=None):
    from ..localcloud import LocalCloud
    from ..state_dir import private_dir
    from ..vast.local import LocalLauncher, local_home
    from ..vast.sdk import VastProvider

    root = private_dir(local_home() / "cloud")  # the first launch may create the state dir itself
    with _ledger(create=True) as ledger:
        with LocalCloud(root=root, price_dph=price, keep_destroyed=False) as lc:
            click.echo(f"local cloud at {lc.url} (this machine, ${price:.3f}/h)")
            provider = VastProvider(lc.api_key, lc.url)
            launcher = LocalLauncher(cfg, provider, ledger, opts, echo=click.echo)
            try:
                result = launcher.resume(ledger.get(resumed["id"])) if resumed else launcher.run()
            finally:
                _local_cloud_ends(ledger, lc)
        if result.state == "running":
            row = ledger.get(result.launch_id)
            result.state, result.end_reason = row["state"], row["end_reason"]
            click.echo(f"the local cloud ended with this launcher, and instance {result.instance_id} with it")
        return result


def _local_cloud_ends(ledger, lc) -> None:
    """Every launch on this embedded cloud that is still open ends with it: record that."""
    lc.close()
    for row in ledger.launches(active_only=True):
        if row["target"] == "local" and row["provider_url"] == lc.url:
            ledger.finish(row["id"], "destroyed", "the embedded local cloud ended with its launcher; the instance ended with it")


# --- check ----------------------------------------------------------------------------------
@click.command()
@config_option
@click.option("--target", type=click.Choice(["vast", "local", "slurm"]), default="vast", show_default=True)
@click.option("--local", is_flag=True, help="same as --target local (what `vast-launch --local` checks)")
@click.option(
    "--wandb-mode",
    type=click.Choice(["online", "offline", "disabled"]),
    default=None,
    help="the W&B mode the launch will use (default: offline for --local, else wandb.mode)",
)
@click.option("--allow-dirty", is_flag=True, help="uncommitted changes are a warning, not a failure")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def check(config, target, local, wandb_mode, allow_dirty, as_json):
    """Pre-launch check for CI: config valid, commit pushed, tree clean, credentials present.

    Exits 1 with one line per failure.

    \b
    Example:
      vast-launch check --config configs/burgers.yaml --json
    """
    from ..checks import CheckReport, run_checks

    try:
        cfg = _load(config)
        target = "local" if local else target
        report = run_checks(cfg, target, allow_dirty, wandb_mode or ("offline" if target == "local" else None))
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
def offers(config, limit, as_json):
    """Show the ranked offers for the config's resources and why each ranks where it does.

    \b
    Example:
      vast-launch offers --config configs/burgers.yaml --limit 5
    """

    def go():
        from ..vast.offers import build_query, describe_query, rank_offers

        cfg = _load(config)
        q, order, otype = build_query(cfg.resources)
        ranked = rank_offers(
            _provider_for(url=os.environ.get("VAST_URL")).search(q, order, otype, cfg.resources.disk_gb), cfg.resources
        )[:limit]
        if as_json:
            click.echo(json.dumps([{"rank": r.rank, "why": r.reason, **r.offer} for r in ranked], indent=2))
            return
        click.echo(f"query: {describe_query(q)}")
        if not ranked:
            click.echo("no offer fits: relax resources.* in the config")
        for r in ranked:
            o = r.offer
            click.echo(
                f"{r.rank:>3}. offer {o['id']:<9} {o.get('gpu_name')} x{o.get('num_gpus')}  "
                f"${float(o.get('dph_total') or 0):.3f}/h  {o.get('geolocation') or ''}  -- {r.reason}"
            )

    _run(go)
