"""`vast-launch`: launch is the default command.

Imports stay inside the commands so that `--help`, `status` and `check` start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from .errors import CheckFailed, UserError

DEFAULT_CONFIG = "configs/burgers.yaml"
_debug = os.environ.get("VAST_LAUNCH_DEBUG") == "1"


class DefaultToLaunch(click.Group):
    """`vast-launch --auto-shutdown --config F` means `vast-launch launch --auto-shutdown --config F`.

    Every error a command lets through becomes one line and exit 1; `--debug` (anywhere before `--`)
    shows the traceback instead.
    """

    def parse_args(self, ctx, args):
        global _debug
        cut = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:cut]:
            _debug = True
            args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            if not args[0].startswith("-"):  # launch takes options only: a word is a mistyped command
                import difflib

                close = difflib.get_close_matches(args[0], sorted(self.commands), n=1)
                hint = f" Did you mean `vast-launch {close[0]}`?" if close else " See `vast-launch --help`."
                raise click.UsageError(f"no such command {args[0]!r}.{hint}", ctx)
            args = ["launch", *args]
        elif not args:
            args = ["--help"]
        return super().parse_args(ctx, args)

    def main(self, *args, **kwargs):
        """Usage errors as one line too (click's own form is a usage block and three lines)."""
        from .ledger import keep_new_files_private

        keep_new_files_private()
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "vast-launch"
            hint = "" if "vast-launch" in exc.format_message() else f" (see `{where} --help`)"
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UserError as exc:  # the user's to fix: its lines, also with --debug
            _fail(str(exc))
        except Exception as exc:
            if _debug:
                raise
            from .errors import one_line

            _fail(one_line(exc))


@click.group(cls=DefaultToLaunch, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vast-launch")
@click.option("--debug", is_flag=True, expose_value=False,
              help="show the traceback of an error instead of its one line (also VAST_LAUNCH_DEBUG=1)")
def main() -> None:
    """Run training on rented Vast.ai GPUs; the instance always destroys itself.

    \b
    Examples:
      vast-launch --auto-shutdown --config configs/burgers.yaml
      vast-launch --local --auto-shutdown --config configs/burgers.yaml --profile smoke
      vast-launch check --config configs/burgers.yaml --json
      vast-launch status
      vast-launch reap --dry-run
    """


def _fail(msg: str, code: int = 1) -> None:
    for line in msg.splitlines() or [""]:  # several problems (a config's): one line each
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def _load(config: str):
    from .config import load_config

    return load_config(config)


def _ledger():
    from .ledger import Ledger

    return Ledger()


def _provider_for(row=None, url=None):
    from .credentials import find_api_key
    from .vast import VastProvider

    if row is not None and row.get("target") == "local":
        # The embedded cloud's key died with it; the account key must never go to its old port.
        from .settle import launcher_alive

        pid = (row.get("extra") or {}).get("launcher_pid") if isinstance(row.get("extra"), dict) else None
        if launcher_alive(row):
            raise UserError(f"{row['id']} runs on the embedded local cloud of launcher pid {pid}: "
                            f"stop it there (Ctrl-C), or `vast-launch down {row['id']}`")
        raise UserError(f"{row['id']} ran on the embedded local cloud, which ended with its launcher; "
                        "its instance ended with it")
    key = find_api_key()
    if not key:
        raise UserError("no Vast API key: set VAST_API_KEY or run `vastai set api-key KEY`")
    return VastProvider(key, url or (row or {}).get("provider_url"), on_retry=_retry_notice)


def _retry_notice(what: str) -> None:
    """Retries show as progress at a terminal; in logs and pipes only the outcome counts."""
    if _debug or sys.stderr.isatty():
        click.echo(f"  retrying {what}", err=True)


def _settle(ledger, rows, warn: bool = True) -> None:
    """Open rows whose launcher died are settled with the provider before they are shown or used.

    Commands that go on to call the provider themselves pass warn=False: their own error says it.
    """
    from .settle import settle

    for note in settle(ledger, rows, _provider_for):
        if warn:
            click.echo(f"warning: {note}", err=True)


def _run(fn):
    try:
        return fn()
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except CheckFailed as exc:
        for line in exc.failures:
            click.echo(f"check failed: {line}", err=True)
        sys.exit(1)
    # any other UserError goes on to DefaultToLaunch.invoke, which prints it


# --- launch ---------------------------------------------------------------------------------
@main.command()
@click.option("--config", "config", default=DEFAULT_CONFIG, show_default=True, type=click.Path(dir_okay=False),
              help="launch YAML")
@click.option("--auto-shutdown/--no-auto-shutdown", default=None,
              help="destroy the instance when training ends (success or failure); default: "
                   "lifecycle.auto_shutdown. The hard deadline (lifecycle.max_hours) applies either way")
@click.option("--local", is_flag=True, help="rent this machine from the embedded local cloud (no Vast account)")
@click.option("--dry-run", is_flag=True, help="print the offer, create payload and onstart (secrets redacted); rent nothing")
@click.option("--follow/--detach", default=None, help="stream logs until the instance is gone (default: follow with --local)")
@click.option("--profile", default=None, help="training profile from train.profiles (smoke, full)")
@click.option("--allow-dirty", is_flag=True, help="launch with uncommitted changes; the instance runs the pushed commit without them")
@click.option("--wandb-mode", type=click.Choice(["online", "offline", "disabled"]), default=None,
              help="override wandb.mode (default offline with --local)")
@click.option("--price", type=float, default=None, help="--local only: the local cloud's $/h")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE",
              help="extra environment for the instance (not for secrets: use WANDB_API_KEY / VAST_LAUNCH_GIT_TOKEN)")
@click.option("--target", type=click.Choice(["vast", "slurm"]), default="vast", show_default=True)
@click.option("--poll-seconds", default=1.0, show_default=True, type=click.FloatRange(0.01, 600),
              help="time between status/log polls while following; cost timelines are this precise")
@click.option("--heartbeat-seconds", default=30.0, show_default=True, type=click.FloatRange(0),
              help="while following: a progress line (stage, its run time, cost so far) after this many "
                   "seconds without output; 0: none")
@click.option("--yes", "-y", is_flag=True, help="do not ask before renting")
@click.option("--pipeline", default=None, help="--target slurm: which slurm.pipelines entry (default: the first)")
@click.option("--list-pipelines", is_flag=True, help="--target slurm: list the pipelines and their resources")
@click.option("--from-stage", default=None, help="--target slurm: resubmit from this stage, reusing the last "
                                                 "submission's outputs and W&B group")
@click.option("--walltime", default=None, metavar="HH:MM:SS", help="--target slurm: every stage's time limit")
@click.option("--memory", default=None, metavar="SIZE", help="--target slurm: every stage's memory, e.g. 96G")
@click.option("--cpus", default=None, type=click.IntRange(1), help="--target slurm: every stage's CPUs")
@click.option("--gpus", default=None, type=click.IntRange(0), help="--target slurm: every stage's GPUs")
@click.option("--partition", default=None, help="--target slurm: partition for every stage")
def launch(config, auto_shutdown, local, dry_run, follow, profile, allow_dirty, wandb_mode, price, env_pairs,
           target, poll_seconds, heartbeat_seconds, yes, pipeline, list_pipelines, from_stage, walltime, memory, cpus,
           gpus, partition):
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
      vast-launch --target slurm --config configs/burgers.yaml --pipeline full --memory 96G
      vast-launch --target slurm --config configs/burgers.yaml --pipeline full --from-stage diffusion_residual
    """
    if target == "slurm":
        return _launch_slurm(config, pipeline, list_pipelines, from_stage, dry_run, profile, wandb_mode,
                             dict(walltime=walltime, memory=memory, cpus=cpus, gpus=gpus, partition=partition))
    slurm_only = {"--pipeline": pipeline, "--list-pipelines": list_pipelines or None, "--from-stage": from_stage,
                  "--walltime": walltime, "--memory": memory, "--cpus": cpus, "--gpus": gpus, "--partition": partition}
    given = [k for k, v in slurm_only.items() if v is not None]
    if given:
        _fail(f"{', '.join(given)}: only with --target slurm")

    def go():
        from .launch import Launcher, LaunchOptions

        cfg = _load(config)
        if price is not None and price < 0:
            raise UserError(f"--price: must be >= 0 (got {price})")
        extra = {}
        for pair in env_pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.isidentifier():
                raise UserError(f"--env {pair!r}: expected KEY=VALUE")
            extra[key] = value
        opts = LaunchOptions(auto_shutdown=auto_shutdown, dry_run=dry_run, follow=follow,
                             profile=profile, allow_dirty=allow_dirty, wandb_mode=wandb_mode, extra_env=extra,
                             poll_seconds=poll_seconds, heartbeat_seconds=heartbeat_seconds)
        if local:
            return _launch_local(cfg, opts, price or 0.0)
        from .credentials import find_api_key

        provider = None if dry_run and not find_api_key() else _provider_for(url=os.environ.get("VAST_URL"))
        if not dry_run and not yes and sys.stdin.isatty():
            click.confirm("Rent an instance now?", abort=True, default=True)
        if sys.stdin.isatty():
            opts.ask_destroy = lambda: click.confirm(
                "\nDestroy the instance now? (no: detach and leave it running, its teardown armed)", default=True)
        with _ledger() as ledger:
            return Launcher(cfg, provider, ledger, opts, echo=click.echo).run()

    from .interrupts import signals_interrupt
    from .protocol import EXIT_INTERRUPTED

    with signals_interrupt():
        result = _run(go)
    if result is not None and result.exit_code == EXIT_INTERRUPTED:
        click.echo("interrupted", err=True)
    sys.exit(result.exit_code if result is not None else 0)


def _launch_slurm(config, pipeline, list_pipelines, from_stage, dry_run, profile, wandb_mode, overrides):
    def go():
        from . import slurm

        cfg = _load(config)
        if list_pipelines:
            for name, stages in slurm.pipelines(cfg).items():
                click.echo(f"{name}:")
                for stage, r in stages.items():
                    click.echo(f"  {stage:<22} {r.walltime:>10} {r.memory:>6} {r.cpus:>3} CPU {r.gpus} GPU")
            return
        opts = slurm.SlurmOptions(pipeline=pipeline, from_stage=from_stage, dry_run=dry_run, profile=profile,
                                  wandb_mode=wandb_mode, **overrides)
        with _ledger() as ledger:
            return slurm.launch(cfg, ledger, opts, click.echo)

    _run(go)


def _launch_local(cfg, opts, price: float):
    from .ledger import private_dir
    from .local_launch import LocalLauncher, local_home, local_runs_dir
    from .localcloud import LocalCloud
    from .vast import VastProvider

    opts.runs_dir = local_runs_dir()
    root = private_dir(local_home() / "cloud")  # the first launch may create the state dir itself
    with _ledger() as ledger:
        with LocalCloud(root=root, price_dph=price) as lc:
            click.echo(f"local cloud at {lc.url} (this machine, ${price:.3f}/h)")
            provider = VastProvider(lc.api_key, lc.url)
            launcher = LocalLauncher(cfg, provider, ledger, opts, echo=click.echo)
            try:
                result = launcher.run()
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
            ledger.finish(row["id"], "destroyed", "the embedded local cloud ended with its launcher; "
                                                  "the instance ended with it")


# --- check ----------------------------------------------------------------------------------
@main.command()
@click.option("--config", "config", default=DEFAULT_CONFIG, show_default=True, type=click.Path(dir_okay=False))
@click.option("--target", type=click.Choice(["vast", "local", "slurm"]), default="vast", show_default=True)
@click.option("--local", is_flag=True, help="same as --target local (what `vast-launch --local` checks)")
@click.option("--wandb-mode", type=click.Choice(["online", "offline", "disabled"]), default=None,
              help="the W&B mode the launch will use (default: offline for --local, else wandb.mode)")
@click.option("--allow-dirty", is_flag=True, help="uncommitted changes are a warning, not a failure")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
def check(config, target, local, wandb_mode, allow_dirty, as_json):
    """Pre-launch check for CI: config valid, commit pushed, tree clean, credentials present.

    Exits 1 with one line per failure.

    \b
    Example:
      vast-launch check --config configs/burgers.yaml --json
    """
    from .checks import CheckReport, run_checks

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
@main.command()
@click.option("--config", "config", default=DEFAULT_CONFIG, show_default=True, type=click.Path(dir_okay=False))
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def offers(config, limit, as_json):
    """Show the ranked offers for the config's resources and why each ranks where it does.

    \b
    Example:
      vast-launch offers --config configs/burgers.yaml --limit 5
    """

    def go():
        from .offers import build_query, describe_query, rank_offers

        cfg = _load(config)
        q, order, otype = build_query(cfg.resources)
        ranked = rank_offers(_provider_for(url=os.environ.get("VAST_URL")).search(
            q, order, otype, cfg.resources.disk_gb), cfg.resources)[:limit]
        if as_json:
            click.echo(json.dumps([{"rank": r.rank, "why": r.reason, **r.offer} for r in ranked], indent=2))
            return
        click.echo(f"query: {describe_query(q)}")
        if not ranked:
            click.echo("no offer fits: relax resources.* in the config")
        for r in ranked:
            o = r.offer
            click.echo(f"{r.rank:>3}. offer {o['id']:<9} {o.get('gpu_name')} x{o.get('num_gpus')}  "
                       f"${float(o.get('dph_total') or 0):.3f}/h  {o.get('geolocation') or ''}  -- {r.reason}")

    _run(go)


# --- status / logs / down -------------------------------------------------------------------
@main.command()
@click.argument("launch_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="include finished launches older than 7 days")
@click.option("--watch", is_flag=True, help="redraw until every launch shown has ended (or Ctrl-C)")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.05), help="--watch: seconds between redraws")
def status(launch_id, as_json, show_all, watch, interval):
    """Each launch's state, current stage, runtime, $/h, cost so far, deadline and end reason.

    Launches whose launcher died are first settled with the provider, so what is shown is true now.

    \b
    Examples:
      vast-launch status
      vast-launch status --watch
      vast-launch status burgers-20261122 --json
    """
    import time

    from . import status_view

    def snapshot():
        with _ledger() as ledger:
            if launch_id:
                row = ledger.find(launch_id)
                if row is None:
                    raise UserError(f"no launch matches {launch_id!r} (see `vast-launch status`)")
                rows = [row]
            else:
                rows = ledger.launches(since=None if show_all else time.time() - 7 * 86400)
            _settle(ledger, rows)
            return status_view.collect(ledger, [ledger.get(r["id"]) for r in rows])

    shown = _run(snapshot)
    if as_json:
        click.echo(json.dumps(shown if not launch_id else shown[0], indent=2))
        return
    if not shown:
        click.echo("no launches yet: `vast-launch --local --auto-shutdown --config configs/burgers.yaml`")
        return
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 250)  # a pipe gets whole lines
    if not watch:
        console.print(status_view.table(shown))
        return
    from rich.live import Live

    # A terminal redraws in place; a log or a pipe gets each snapshot in turn, stamped.
    with Live(console=console, auto_refresh=False) if console.is_terminal else contextlib.nullcontext() as live:
        while True:
            if live is not None:
                live.update(status_view.table(shown), refresh=True)
            else:
                click.echo(f"--- {time.strftime('%H:%M:%S')}")
                console.print(status_view.table(shown))
            if not any(status_view.is_active(o) for o in shown):
                break
            time.sleep(interval)
            shown = _run(snapshot)
    click.echo("every launch shown has ended")


@main.command()
@click.argument("launch_id")
@click.option("--tail", default=200, show_default=True, help="lines of history to start with")
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines until the instance is gone")
@click.option("--via", type=click.Choice(["auto", "ssh", "api"]), default="auto", show_default=True,
              help="auto: SSH when the instance exposes it, else the Vast logs API")
@click.option("--identity", "-i", default=None, type=click.Path(dir_okay=False, exists=True),
              help="SSH private key (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent)")
def logs(launch_id, tail, follow, via, identity):
    """Print (or follow) the instance's onstart and trainer log, over SSH or the Vast logs API.

    \b
    Examples:
      vast-launch logs burgers-20261122-120000-ab12 --follow
      vast-launch logs 30001 --via api --tail 50
    """

    def go():
        with _ledger() as ledger:
            row = ledger.find(launch_id)
        if row is not None and row["target"] == "slurm":
            return _logs_of_slurm_jobs(row, tail, follow)
        if row is None or not row.get("instance_id"):
            raise UserError(f"no instance known for {launch_id!r} (see `vast-launch status`)")
        if row["state"] in ("destroyed", "aborted") or row["target"] == "local":
            from .local_launch import local_runs_dir
            from .settle import local_workdir

            local = local_runs_dir() / row["id"] / "boot.log"
            live = local_workdir(row)
            if row["target"] == "local" and not local.exists() and live is not None:
                local = live / "boot.log"  # a local launch still running: its instance's files are here
            if local.exists():
                click.echo("\n".join(local.read_text(errors="replace").splitlines()[-tail:]))
                return
            if row["state"] in ("destroyed", "aborted"):
                kept = _kept_log_lines(row["id"])
                if not kept:
                    raise UserError(f"instance {row['instance_id']} is destroyed; its logs went with it")
                click.echo(f"(instance {row['instance_id']} is destroyed: the last {min(tail, len(kept))} "
                           "lines its launcher kept)", err=True)
                click.echo("\n".join(kept[-tail:]))
                return
        provider = _provider_for(row)
        iid = row["instance_id"]
        if via != "api":
            from . import remote

            ep = remote.endpoint(provider.show(iid))
            if ep is None and via == "ssh":
                raise UserError(f"instance {iid} shows no SSH endpoint; use --via api")
            if ep is not None:
                try:
                    return _logs_over_ssh(row, ep, tail, follow, identity, lambda: provider.show(iid) is None)
                except UserError as exc:
                    if via == "ssh":
                        raise
                    click.echo(f"note: {exc}; using the Vast logs API", err=True)
        _logs_over_api(provider, iid, tail, follow)

    _run(go)


def _logs_of_slurm_jobs(row, tail, follow) -> None:
    """Each stage's sbatch output, last `tail` lines, in pipeline order."""
    from .slurm import job_log

    if follow:
        raise UserError("--follow: not for SLURM launches (`tail -f` the files named below)")
    jobs = (row.get("extra") or {}).get("jobs") or []
    if not jobs:
        raise UserError(f"launch {row['id']} submitted no jobs (see `vast-launch status {row['id']}`)")
    for job in jobs:
        path = job_log(job)
        click.echo(f"== {job['stage']} (job {job['job_id']}): {path}")
        if path.exists():
            click.echo("\n".join(path.read_text(errors="replace").splitlines()[-tail:]))
        else:
            click.echo("(no output yet: the job has not started)")


def _logs_over_ssh(row, ep, tail, follow, identity, gone) -> None:
    from . import remote

    cmd = f'F=$({remote.log_path_command(row["id"])}); exec tail -n {int(tail)} {"-F" if follow else ""} "$F"'
    with remote.Session(*ep, key_file=identity, known_hosts=remote.known_hosts_file()) as session:
        session.run(cmd, _stream_to(sys.stdout), _stream_to(sys.stderr), stop=gone if follow else None)


def _stream_to(stream):
    """Write raw bytes from the instance straight through, as they arrive."""
    return lambda data: (stream.buffer.write(data), stream.buffer.flush())


def _kept_log_lines(launch_id: str) -> list[str]:
    with _ledger() as ledger:
        kept = [e for e in ledger.events(launch_id) if e["state"] == "log_tail"]
    return list(json.loads(kept[-1]["detail"]).get("lines") or []) if kept else []


def _logs_over_api(provider, iid, tail, follow) -> None:
    import time

    from .progress import new_lines
    from .provider import ProviderError

    window: list[str] = []
    first = True
    while True:
        try:
            lines = provider.logs(iid, tail=tail if not follow else None).splitlines()
        except (ProviderError, TimeoutError) as exc:
            lines = window
            if not follow:
                raise UserError(f"logs of instance {iid}: {exc}")
        fresh, gap = new_lines(window, lines)
        if gap:
            click.echo("[logs] more lines were written than one fetch returns; some were skipped", err=True)
        for line in fresh[-tail:] if first else fresh:
            click.echo(line)
        window, first = lines, False
        if not follow or provider.show(iid) is None:
            return
        time.sleep(2.0)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("launch_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--identity", "-i", default=None, type=click.Path(dir_okay=False, exists=True),
              help="SSH private key (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent)")
def ssh(identity, launch_id, command):
    """Open a shell on the instance, or run COMMAND there and exit with its status.

    \b
    Examples:
      vast-launch ssh burgers-20261122-120000-ab12
      vast-launch ssh -i ~/.ssh/vast burgers-20261122-120000-ab12 nvidia-smi -L
    """

    def go():
        from . import remote

        with _ledger() as ledger:
            row = ledger.find(launch_id)
        if row is not None and row["target"] == "slurm":
            raise UserError(f"{row['id']} ran on SLURM: no instance to SSH into (`vast-launch logs {row['id']}`)")
        if row is None or not row.get("instance_id"):
            raise UserError(f"no instance known for {launch_id!r} (see `vast-launch status`)")
        inst = _provider_for(row).show(row["instance_id"])
        if inst is None:
            raise UserError(f"instance {row['instance_id']} is gone")
        ep = remote.endpoint(inst)
        if ep is None:
            raise UserError(f"instance {row['instance_id']} shows no SSH endpoint (it needs runtype ssh)")
        with remote.Session(*ep, key_file=identity, known_hosts=remote.known_hosts_file()) as session:
            if not command:
                return session.shell()
            return session.run(" ".join(command), _stream_to(sys.stdout), _stream_to(sys.stderr))

    sys.exit(_run(go) or 0)


@main.command()
@click.argument("launch_ids", nargs=-1)
@click.option("--all", "down_all", is_flag=True, help="every active launch in the ledger")
@click.option("--yes", "-y", is_flag=True, help="do not ask")
def down(launch_ids, down_all, yes):
    """Destroy the instances of the given launches (confirmed gone before it returns).

    \b
    Examples:
      vast-launch down burgers-20261122-120000-ab12
      vast-launch down --all --yes
    """

    def go():
        if not launch_ids and not down_all:
            raise UserError("name launch ids, or pass --all --yes")
        if down_all and not yes:
            raise UserError("--all destroys every active launch: add --yes")
        failed = 0
        with _ledger() as ledger:
            rows = ledger.launches(active_only=True) if down_all else []
            for lid in launch_ids:
                row = ledger.find(lid)
                if row is None:
                    raise UserError(f"no launch matches {lid!r}")
                rows.append(row)
            _settle(ledger, [r for r in rows if r["target"] != "local"], warn=False)
            for row in rows:
                try:
                    click.echo(f"{row['id']}: {_down_one(ledger, ledger.get(row['id']), yes)}")
                except UserError as exc:
                    failed += 1
                    click.echo(f"error: {row['id']}: {exc}", err=True)
        if failed:
            sys.exit(1)

    _run(go)


def _down_one(ledger, row, yes: bool) -> str:
    """Destroy one launch's instance after checking it is ours; returns what happened."""
    from .protocol import label_for, launch_id_of
    from .provider import ProviderError
    from .teardown import destroy_and_record, instances_by_label

    if row["target"] == "slurm":
        from . import slurm

        cancelled = slurm.cancel_launch(ledger, row)
        return f"cancelled jobs {', '.join(cancelled) or '(none were left)'}"
    if row["target"] == "local":
        return _down_local(ledger, row)
    provider = _provider_for(row)
    iid = row.get("instance_id")
    if not iid:
        found = instances_by_label(provider, row["id"])
        if not found:
            if row["state"] not in ("destroyed", "aborted", "failed"):
                ledger.finish(row["id"], "aborted", "down: no instance exists for this launch")
            return "no instance exists for this launch"
        iid = int(found[0]["id"])
    inst = provider.show(int(iid))
    if inst is None:
        _settle(ledger, [row])
        return f"instance {iid} was already gone"
    label = inst.get("label") or ""
    if launch_id_of(label) != row["id"]:
        raise UserError(f"instance {iid} carries label {label!r}, not {label_for(row['id'])!r}: not destroyed")
    if not yes and sys.stdin.isatty():
        click.confirm(f"Destroy instance {iid} ({inst.get('gpu_name')}, {inst.get('actual_status')}, "
                      f"${float(inst.get('dph_total') or 0):.3f}/h) of {row['id']}?", abort=True)
    final = ledger.get(row["id"])["state"] not in ("destroyed", "aborted", "failed")
    try:
        destroy_and_record(provider, ledger, row["id"], int(iid), "destroyed by `vast-launch down`", final=final)
    except ProviderError as exc:
        raise UserError(f"instance {iid} was NOT destroyed: {exc}")
    return f"instance {iid} destroyed (confirmed gone)"


def _down_local(ledger, row) -> str:
    """A local launch lives inside its launcher: end that launcher, which ends its cloud and instance."""
    import signal
    import time

    from .settle import launcher_alive

    if launcher_alive(row):
        pid = int(row["extra"]["launcher_pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 60
        while launcher_alive(row) and time.time() < deadline:
            time.sleep(0.1)
        if launcher_alive(row):
            raise UserError(f"its launcher (pid {pid}) is still running 60 s after SIGTERM")
        _settle(ledger, [ledger.get(row["id"])])
        return f"its launcher (pid {pid}) was stopped; the local cloud and its instance ended with it"
    _settle(ledger, [row])
    return "it ran on the embedded local cloud, which ended with its launcher; nothing is left running"


# --- report ---------------------------------------------------------------------------------
@main.command()
@click.argument("launch_id")
@click.option("--plot", "with_plot", is_flag=True,
              help="also a PNG: a panel per metric the stages logged, and rollout nRMSE when evaluated (needs matplotlib)")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="the launch's outputs (default: runs/local/<id>/out for local launches)")
@click.option("--dest", default=None, help="where the Markdown (and PNG) go (default: reports/ under the state dir, "
                                           "never the repository)")
@click.option("--json", "as_json", is_flag=True)
def report(launch_id, with_plot, out_dir, dest, as_json):
    """After a launch: timeline, cost, hardware, evaluation table and W&B group, as Markdown.

    \b
    Examples:
      vast-launch report burgers-20261122-120000-ab12 --plot
      vast-launch report 30001 --out path/to/out --json
    """

    def go():
        from . import report as rep

        with _ledger() as ledger:
            row = ledger.find(launch_id)
            if row is None:
                raise UserError(f"no launch matches {launch_id!r} (see `vast-launch status`)")
            extra = row["extra"] if isinstance(row.get("extra"), dict) else {}
            from .local_launch import local_runs_dir

            candidates = [Path(out_dir)] if out_dir else [local_runs_dir() / row["id"] / "out"] + (
                [Path(extra["out_dir"])] if extra.get("out_dir") else [])  # local launch; SLURM submission
            data = rep.build(ledger, row, next((c for c in candidates if c.is_dir()), None))
        from .ledger import default_home

        dest_dir = Path(dest) if dest else default_home() / "reports"
        dest_dir.mkdir(parents=True, exist_ok=True)
        png = rep.plot(data, dest_dir / f"{row['id']}.png") if with_plot else None
        md = dest_dir / f"{row['id']}.md"
        text = rep.to_markdown(data, png)
        md.write_text(text)
        if as_json:
            data["curves"] = [{"key": c["key"], "x": c["x"], "points": len(c["points"])} for c in data["curves"]]
            click.echo(json.dumps({**data, "markdown": str(md), "png": str(png) if png else None,
                                   "panels": rep.panel_count(data) if png else 0}, indent=2))
        else:
            click.echo(text)
            click.echo(f"written: {md}" + (f" and {png}" if png else ""))

    _run(go)


# --- cost -----------------------------------------------------------------------------------
@main.command()
@click.option("--since", default="30d", show_default=True, help="launches created after: 24h, 7d, 2w or a date")
@click.option("--until", default=None, help="launches created before: a duration ago or a date")
@click.option("--by", "by", type=click.Choice(["launch", "group", "stage", "gpu", "day"]), default="launch",
              show_default=True, help="one row per launch, W&B group, stage, GPU model or UTC day")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--reconcile/--no-reconcile", default=True, show_default=True,
              help="read Vast's invoices for launches whose bill is not settled yet (needs the API key)")
@click.option("--sync-wandb", is_flag=True, help="write cost_usd, gpu_hours and dph_total into each W&B run's summary")
def cost(since, until, by, fmt, reconcile, sync_wandb):
    """What launches cost: estimate, billed amount and the difference.

    The estimate uses the rates stored at rental time (GPU + storage while running, storage
    only while stopped/exited/loading, nothing while offline); it never looks up today's price.
    Stage costs come from the stage times the instance reported; setup, loading and teardown
    are shown as "(outside stages)", so every grouping adds up to the same total.

    \b
    Examples:
      vast-launch cost --since 7d
      vast-launch cost --by stage --format csv > stages.csv
      vast-launch cost --by group --since 2026-11-01 --format json
    """
    from .timespec import parse_when

    def go():
        from . import cost as costmod

        t_since, t_until = parse_when(since, "--since"), parse_when(until, "--until")
        notes, billed = [], {}
        with _ledger() as ledger:
            _settle(ledger, ledger.launches(since=t_since, until=t_until, active_only=True))
            if reconcile:
                billed, notes = _reconcile_vast(ledger, t_since, t_until)
            report = costmod.build_report(ledger, by, t_since, t_until, billed=billed)
            report.notes.extend(notes)
            if sync_wandb:
                from .wandb_api import sync_cost_to_wandb

                launches = report.rows if by == "launch" else costmod.launch_rows(ledger, t_since, t_until,
                                                                                billed=billed)
                report.notes.append(sync_cost_to_wandb(ledger, launches))
        return report

    report = _run(go)
    from .cost_output import render

    render(report, fmt, click.echo)


def _reconcile_vast(ledger, since, until):
    """Billed amounts for Vast launches whose bill is not frozen; frozen once settled."""
    import time

    from .cost import SETTLE_SECONDS, reconcile, unbilled_launches
    from .credentials import find_api_key
    from .provider import ProviderError

    if not find_api_key():
        n = unbilled_launches(ledger, since, until, count_only=True)
        return {}, [f"{n} launch(es) not reconciled: no Vast API key (billed shown as unknown)"] if n else []
    pending = unbilled_launches(ledger, since, until)
    billed, notes = {}, []
    now = time.time()
    urls = {}
    for row in pending:
        urls.setdefault(row["provider_url"], []).append(row["id"])
    for url, ids in urls.items():
        provider = _provider_for(url=url)
        try:
            billed.update(reconcile(ledger, ids, provider.invoices,
                                    settled=lambda r: bool(r["ended_at"]) and now - r["ended_at"] > SETTLE_SECONDS))
        except (ProviderError, OSError) as exc:
            notes.append(f"{len(ids)} launch(es) on {url} not reconciled: {exc}")
    return billed, notes


# --- metrics --------------------------------------------------------------------------------
@main.command()
@click.option("--window", default="24h", show_default=True, help="runs created within: 30m, 24h, 7d")
@click.option("--project", default=None, metavar="ENTITY/PROJECT",
              help="W&B project (default: $WANDB_ENTITY/$WANDB_PROJECT, else wandb.project of --config)")
@click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
              help="take the W&B project from this launch config")
@click.option("--offline-dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="read offline runs under this directory instead of the W&B API (e.g. runs/local)")
@click.option("--format", "fmt", type=click.Choice(["json", "prometheus"]), default="json", show_default=True)
@click.option("--push", type=click.Choice(["datadog"]), default=None, help="also send the gauges (needs DD_API_KEY)")
@click.option("--time-limit", default=120.0, show_default=True, help="seconds; what was read by then is reported")
@click.option("--sps-key", default=None, help="summary key with steps/s of push-to-main runs (default: overview/sps)")
def metrics(window, project, config, offline_dir, fmt, push, time_limit, sps_key):
    """Run-health metrics from W&B: active, completed/failed, durations, GPU hours, CI and sweeps.

    Only runs created inside the window (or still running) are fetched, with server-side
    filters and lazy pages. GPU hours use each run's logged GPU count (gpu.count in its config).
    Push-to-main CI runs are named github.sky.*; sweep runs belong to a sweep or have .sweep
    in their name.

    \b
    Examples:
      vast-launch metrics --project my-team/burgers --format prometheus > /var/lib/node_exporter/wandb.prom
      vast-launch metrics --offline-dir runs/local --window 7d
      DD_API_KEY=... vast-launch metrics --project my-team/burgers --push datadog
    """
    from .timespec import parse_duration

    def go():
        from . import collector
        from .wandb_api import ApiRunSource, OfflineRunSource

        window_s = parse_duration(window, "--window")
        if time_limit <= 0:
            raise UserError(f"--time-limit: must be > 0 (got {time_limit})")
        if push == "datadog" and not os.environ.get("DD_API_KEY"):
            raise UserError("--push datadog needs DD_API_KEY in the environment")
        if offline_dir:
            source = OfflineRunSource(offline_dir)
        else:
            path = project or _wandb_project(config)
            source = ApiRunSource(path)
        got = collector.collect(source, window_s, time_limit, sps_key)
        for note in got.notes:
            click.echo(f"warning: {note}", err=True)
        if push == "datadog":
            sent = collector.push_datadog(got.metrics, tags=[f"window:{window}"])
            click.echo(f"sent {sent} gauges to Datadog", err=True)
        return got

    got = _run(go)
    from . import collector

    click.echo(collector.to_prometheus(got.metrics) if fmt == "prometheus" else json.dumps(got.metrics, indent=2))


def _wandb_project(config) -> str:
    entity, project = os.environ.get("WANDB_ENTITY"), os.environ.get("WANDB_PROJECT")
    if not project and config:
        project = _load(config).wandb.project
    if not project:
        raise UserError("no W&B project: pass --project ENTITY/PROJECT, --config, or set WANDB_PROJECT")
    if "/" in project or not entity:
        return project
    return f"{entity}/{project}"


# --- reap -----------------------------------------------------------------------------------
@main.command()
@click.option("--dry-run", is_flag=True, help="only list what would be destroyed")
@click.option("--yes", "-y", is_flag=True, help="destroy without asking (for cron / CI schedules)")
@click.option("--grace-minutes", default=None, type=click.FloatRange(0),
              help="after a launch's hard deadline (default: its lifecycle.reap_grace_minutes, else 10)")
@click.option("--loading-minutes", default=None, type=click.FloatRange(0, min_open=True),
              help="longest acceptable loading (default: its lifecycle.loading_timeout_minutes, else 30)")
@click.option("--stuck-minutes", default=10.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="longest acceptable exited/unknown/offline")
@click.option("--json", "as_json", is_flag=True)
def reap(dry_run, yes, grace_minutes, loading_minutes, stuck_minutes, as_json):
    """Destroy our instances (label vast-launch:*) that outlived their launch.

    Reaped: past the deadline + grace, stuck in loading/exited/unknown/offline, or labeled by
    vast-launch but unknown to the ledger. Exit 0: nothing found; 2: found (and destroyed
    unless --dry-run); 1: error.

    \b
    Examples:
      vast-launch reap --dry-run
      */10 * * * *  vast-launch reap --yes     # crontab
    """
    from . import reaper

    def go():
        provider = _provider_for(url=os.environ.get("VAST_URL"))
        with _ledger() as ledger:
            _settle(ledger, [r for r in ledger.launches(active_only=True) if r["provider_url"] == provider.url
                             or r["target"] == "local"], warn=False)
            found = reaper.plan(provider, ledger, grace_minutes, loading_minutes, stuck_minutes)
            if found and not dry_run:
                if not yes:
                    if not sys.stdin.isatty():
                        raise UserError(f"{len(found)} instance(s) to reap: pass --yes to destroy, or --dry-run")
                    click.confirm(f"Destroy {len(found)} instance(s)?", abort=True)
                reaper.reap(provider, ledger, found)
        return found

    found = _run(go)
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in found], indent=2))
    else:
        for v in found:
            verb = "destroyed" if v.destroyed else "FAILED to destroy" if v.error else "would destroy"
            click.echo(f"{verb} instance {v.instance_id} ({v.launch_id or 'no launch'}, {v.status}, "
                       f"${v.dph_total:.3f}/h): {v.reason}" + (f" ({v.error})" if v.error else ""))
        saved = sum(v.dph_total for v in found)
        click.echo(f"{len(found)} instance(s) {'found' if dry_run else 'reaped'}; ${saved:.3f}/h "
                   f"{'would be' if dry_run else ''} saved".replace("  ", " ") if found else "nothing to reap")
    sys.exit(1 if any(v.error for v in found) else 2 if found else 0)


# --- init and the config reference ----------------------------------------------------------
@main.command()
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="where to write it (default: vast-launch.yaml at the repository root)")
@click.option("--force", is_flag=True, help="overwrite an existing file")
def init(out, force):
    """Write a commented starter config for this repository (remote, setup and stage command detected).

    \b
    Examples:
      vast-launch init
      vast-launch init --out configs/gpu.yaml
    Then:
      git add vast-launch.yaml && git commit -m "vast-launch config" && git push
      vast-launch --local --auto-shutdown --config vast-launch.yaml     # on this machine first
      vast-launch --auto-shutdown --config vast-launch.yaml             # on a rented GPU
    """

    def go():
        from . import gitcheck
        from .starter import write_starter

        try:
            root = gitcheck.repo_root(Path.cwd())
        except UserError as exc:
            raise UserError(f"init needs a git repository: {exc}")
        target = Path(out) if out else root / "vast-launch.yaml"
        written = write_starter(Path.cwd(), target, force)
        return os.path.relpath(written)

    rel = _run(go)
    click.echo(f"wrote {rel}: read it, then\n"
               f"  git add {rel} && git commit -m 'vast-launch config' && git push\n"
               f"  vast-launch --local --auto-shutdown --config {rel}    # a first run on this machine\n"
               f"  vast-launch --auto-shutdown --config {rel}            # on a rented GPU")


@main.command("config-schema")
@click.option("--markdown", is_flag=True, help="the reference page (every key, type, default, meaning) instead")
def config_schema(markdown):
    """Print the config's JSON Schema, for editor completion (or its reference, with --markdown).

    \b
    Examples (VS Code, YAML extension):
      vast-launch config-schema > .vast-launch.schema.json
      # first line of the config:  # yaml-language-server: $schema=.vast-launch.schema.json
    """
    from .config_docs import json_schema, reference_markdown

    click.echo(reference_markdown() if markdown else json.dumps(json_schema(), indent=2), nl=not markdown)


# --- local cloud ----------------------------------------------------------------------------
@main.group("local-cloud")
def local_cloud():
    """The embedded Vast-compatible cloud that rents out this machine."""


@local_cloud.command("serve")
@click.option("--port", default=0, show_default=True, help="0 picks a free port")
@click.option("--price", default=0.0, show_default=True, help="$/h of each offer")
@click.option("--root", default=None, help="where instances run (default: a temp dir)")
def serve(port, price, root):
    """Run the local cloud in the foreground; point the vastai CLI at it with VAST_URL.

    The account key is written to a file (mode 0600), never printed.

    \b
    Example:
      vast-launch local-cloud serve --port 8765 &
      VAST_URL=http://127.0.0.1:8765 VAST_API_KEY=$(cat KEYFILE) vastai search offers
    """
    from .ledger import default_home, private_dir
    from .localcloud import LocalCloud

    if price < 0:
        _fail(f"--price: must be >= 0 (got {price})")
    try:
        lc = LocalCloud(root=root, port=port, price_dph=price)
    except OSError as exc:
        _fail(f"local cloud: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    keyfile = private_dir(default_home()) / "localcloud_api_key"
    with contextlib.suppress(FileNotFoundError):
        keyfile.unlink()  # a new file, so it is 0600 from its first byte
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(lc.api_key)
    click.echo(f"local cloud listening on {lc.url}\nexport VAST_URL={lc.url}\nexport VAST_API_KEY=$(cat {keyfile})")
    from .interrupts import signals_interrupt

    try:
        with signals_interrupt():
            lc.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped; every instance it ran was destroyed")


if __name__ == "__main__":
    main()
