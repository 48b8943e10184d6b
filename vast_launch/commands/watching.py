"""`status`, `logs` and `ssh`: looking at launches, never changing them."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from .. import targets
from ..errors import UserError
from .common import find, guarded, ledger, settle_rows

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
@click.option("--json", "as_json", is_flag=True, help="one JSON array, written as it is read")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1), help="the most recent launches shown (open ones always are)"
)
@click.option("--all", "show_all", is_flag=True, help="every launch in the ledger (no --limit)")
@click.option("--since", default=None, help="only launches created after: 24h, 7d, 2w or a date")
@click.option(
    "--state", "states", multiple=True, metavar="STATE", help="only launches in this state (repeatable): running, destroyed..."
)
@click.option("--name", default=None, help="only launches of this config name (a glob: 'burgers*')")
@click.option("--group", default=None, help="only launches of this W&B group")
@click.option("--watch", is_flag=True, help="redraw until every launch shown has ended (or Ctrl-C)")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.05), help="--watch: seconds between redraws")
@guarded
def status(launch_id, as_json, limit, show_all, since, states, name, group, watch, interval):
    """Each launch's state, current stage, runtime, $/h, cost so far, deadline and end reason.

    Shows the open launches and the 20 most recent ones (--limit, --all, filters). Open launches whose
    launcher died are first settled with the provider, so what is shown is true now.

    \b
    Examples:
      vast-launch status
      vast-launch status --watch
      vast-launch status --since 7d --state failed --name 'burgers*'
      vast-launch status burgers-20261122 --json
    """
    import time

    from ..reports import status_view
    from ..timespec import parse_when

    t_since = parse_when(since, "--since")

    def snapshot():
        with ledger() as led:
            if launch_id:
                rows = [find(led, launch_id)]
            else:
                rows = led.recent(None if show_all else limit, t_since, tuple(states), name, group)
            settle_rows(led, rows)
            rows = [led.get(r["id"]) for r in rows]
            _stages_of_running_launches(led, rows)
            return status_view.collect(led, rows, lambda r: targets.of_row(r).stages_now(led, r))

    if show_all and not launch_id and not watch:  # every launch: read, written and forgotten a chunk at a time
        with ledger() as led:
            open_rows = led.launches(active_only=True)
            settle_rows(led, open_rows)
            _stages_of_running_launches(led, [led.get(r["id"]) for r in open_rows])
            shown = status_view.stream(
                led, led.matching(t_since, tuple(states), name, group), lambda r: targets.of_row(r).stages_now(led, r)
            )
            if as_json:
                status_view.write_json(shown, sys.stdout)
            elif not status_view.write_plain_stream(shown, sys.stdout, default_target=targets.DEFAULT):
                click.echo("no launch matches" if since or states or name or group else "no launches yet")
        return
    shown = snapshot()
    if as_json:
        if launch_id:
            click.echo(json.dumps(shown[0], indent=2))
        else:
            status_view.write_json(shown, sys.stdout)
        return
    if not shown:
        filtered = launch_id or since or states or name or group
        click.echo(
            "no launch matches" if filtered else "no launches yet: `vast-launch --local --auto-shutdown --config configs/burgers.yaml`"
        )
        return
    if len(shown) > status_view.DRAWN_ROWS:  # thousands of rows: plain columns, not a drawn table
        status_view.write_plain(shown, sys.stdout, default_target=targets.DEFAULT)
        return
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 250)  # a pipe gets whole lines
    if not watch:
        console.print(status_view.table(shown, default_target=targets.DEFAULT))
        return
    from rich.live import Live

    # A terminal redraws in place; a log or a pipe gets each snapshot in turn, stamped.
    with Live(console=console, auto_refresh=False) if console.is_terminal else contextlib.nullcontext() as live:
        while True:
            if live is not None:
                live.update(status_view.table(shown, default_target=targets.DEFAULT), refresh=True)
            else:
                click.echo(f"--- {time.strftime('%H:%M:%S')}")
                console.print(status_view.table(shown, default_target=targets.DEFAULT))
            if not any(status_view.is_active(o) for o in shown):
                break
            time.sleep(interval)
            shown = snapshot()
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
@guarded
def logs(launch_id, tail, follow, via, identity):
    """Print (or follow) the instance's onstart and trainer log, over SSH or the Vast logs API.

    Once the instance is gone: its log from the outputs store, else the last lines its launcher kept.

    \b
    Examples:
      vast-launch logs burgers-20261122-120000-ab12 --follow
      vast-launch logs 30001 --via api --tail 50
    """
    with ledger() as led:
        row = find(led, launch_id)
        targets.of_row(row).logs(led, row, tail, follow, via, identity, click.echo)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("launch_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@identity_option
@guarded
def ssh(identity, launch_id, command):
    """Open a shell on the instance, or run COMMAND there and exit with its status.

    \b
    Examples:
      vast-launch ssh burgers-20261122-120000-ab12
      vast-launch ssh -i ~/.ssh/vast burgers-20261122-120000-ab12 nvidia-smi -L
    """

    with ledger() as led:
        row = find(led, launch_id)
    sys.exit(targets.of_row(row).ssh(row, command, identity) or 0)


def _stages_of_running_launches(ledger, rows) -> None:
    """A launch nobody follows has no stage in the ledger: its store's events have it."""
    from ..states import TERMINAL
    from ..store import record_stored_stages

    for row in rows:
        if row["state"] not in TERMINAL and not targets.of_row(row).runs_stages_itself:
            try:
                record_stored_stages(ledger, row)
            except UserError as exc:
                click.echo(f"warning: {row['id']}: its stages are not known: {exc}", err=True)
