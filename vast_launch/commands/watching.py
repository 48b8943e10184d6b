"""`status`, `logs` and `ssh`: looking at launches, never changing them."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from ..errors import UserError
from ..states import ENDED_BY_DESTROY
from .common import _ledger, _provider_for, _run, _settle

identity_option = click.option(
    "--identity",
    "-i",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="SSH private key (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent)",
)


# --- status / logs / down -------------------------------------------------------------------
@click.command()
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

    from ..reports import status_view

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
            rows = [ledger.get(r["id"]) for r in rows]
            _stages_of_running_launches(ledger, rows)
            return status_view.collect(ledger, rows, lambda r: _slurm_stages(ledger, r))

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


@click.command()
@click.argument("launch_id")
@click.option("--tail", default=200, show_default=True, help="lines of history to start with")
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines until the instance is gone")
@click.option(
    "--via",
    type=click.Choice(["auto", "ssh", "api"]),
    default="auto",
    show_default=True,
    help="auto: SSH when the instance exposes it, else the Vast logs API",
)
@identity_option
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
        if row["state"] in ENDED_BY_DESTROY or row["target"] == "local":
            text, where = _ended_log(row)
            if text is not None:
                click.echo(f"({where})", err=True)
                click.echo("\n".join(text.splitlines()[-tail:]))
                return
            if row["state"] in ENDED_BY_DESTROY:
                with _ledger() as ledger:
                    kept = ledger.kept_log_lines(row["id"])
                if not kept:
                    raise UserError(f"instance {row['instance_id']} is destroyed; its log went with it (it had no outputs store)")
                click.echo(
                    f"(instance {row['instance_id']} is destroyed: the last {min(tail, len(kept))} lines its launcher kept)", err=True
                )
                click.echo("\n".join(kept[-tail:]))
                return
        provider = _provider_for(row)
        iid = row["instance_id"]
        if via != "api":
            from ..vast import remote

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
        window = _logs_over_api(provider, iid, tail, follow)
        if follow:
            _rest_from_the_store(row, window)

    _run(go)


def _ended_log(row) -> tuple:
    """(log text, where it came from) once the instance is gone: the outputs store's copy, or a local
    launch's work dir while it still runs; (None, None) when neither has it."""
    from ..protocol import store_log
    from ..store import LaunchOutputs, StoreSpec, attempt_of

    spec = StoreSpec.of_row(row)
    if row["target"] == "local" and row["state"] not in ENDED_BY_DESTROY:
        from ..vast.settle import local_workdir

        live = local_workdir(row)
        if live is not None and (live / "boot.log").exists():  # a local launch still running: its files are here
            return (live / "boot.log").read_bytes().decode("utf-8", errors="replace"), f"{live / 'boot.log'}"
    if spec is not None:
        found = LaunchOutputs(spec, row["id"])
        attempt = attempt_of(row)
        text = found.log_text(attempt)
        if text is not None:
            return text, f"instance {row['instance_id']} is gone: its log from {found.where(store_log(attempt))}"
    return None, None


def _logs_of_slurm_jobs(row, tail, follow) -> None:
    """Each stage's sbatch output, last `tail` lines, in pipeline order."""
    from ..slurm.jobs import job_log

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
    from ..vast import remote

    cmd = f'F=$({remote.log_path_command(row["id"])}); exec tail -n {int(tail)} {"-F" if follow else ""} "$F"'
    with remote.Session(*ep, key_file=identity, known_hosts=remote.known_hosts_file()) as session:
        session.run(cmd, _stream_to(sys.stdout), _stream_to(sys.stderr), stop=gone if follow else None)


def _stream_to(stream):
    """Write raw bytes from the instance straight through, as they arrive."""
    return lambda data: (stream.buffer.write(data), stream.buffer.flush())


def _rest_from_the_store(row, window: list[str]) -> None:
    """Following ended with the instance: what it wrote after the last fetch is in the outputs store's copy."""
    from ..vast.progress import new_lines

    with _ledger() as ledger:
        text, _ = _ended_log(ledger.get(row["id"]) or row)
    if text:
        fresh, _ = new_lines(window, text.splitlines())
        for line in fresh:
            click.echo(line)


def _logs_over_api(provider, iid, tail, follow) -> list[str]:
    """Prints the log (following it until the instance is gone); returns the last lines fetched."""
    import time

    from ..vast.progress import new_lines
    from ..vast.provider import ProviderError

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
            return window
        time.sleep(2.0)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("launch_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@identity_option
def ssh(identity, launch_id, command):
    """Open a shell on the instance, or run COMMAND there and exit with its status.

    \b
    Examples:
      vast-launch ssh burgers-20261122-120000-ab12
      vast-launch ssh -i ~/.ssh/vast burgers-20261122-120000-ab12 nvidia-smi -L
    """

    def go():
        from ..vast import remote

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


def _stages_of_running_launches(ledger, rows) -> None:
    """A launch nobody follows has no stage in the ledger: its store's events have it."""
    from ..states import TERMINAL
    from ..store import record_stored_stages

    for row in rows:
        if row["state"] not in TERMINAL and row["target"] != "slurm":
            try:
                record_stored_stages(ledger, row)
            except UserError as exc:
                click.echo(f"warning: {row['id']}: its stages are not known: {exc}", err=True)


def _slurm_stages(ledger, row: dict):
    """A SLURM launch's stages as the scheduler sees them now (its row brought up to date); None otherwise."""
    if row["target"] != "slurm" or not (row.get("extra") or {}).get("jobs"):
        return None
    from ..slurm import launch as slurm

    return slurm.refresh(ledger, row)
