"""`down` and `reap`: the user's and the schedule's teardown."""

from __future__ import annotations

import json
import sys

import click

from .. import targets
from ..errors import LaunchError, UserError
from .common import find, guarded, ledger, settle_rows


@click.command()
@click.argument("launch_ids", nargs=-1)
@click.option("--all", "down_all", is_flag=True, help="every active launch in the ledger")
@click.option("--yes", "-y", is_flag=True, help="do not ask")
@guarded
def down(launch_ids, down_all, yes):
    """Destroy the instances of the given launches (confirmed gone before it returns).

    \b
    Examples:
      vast-launch down burgers-20261122-120000-ab12
      vast-launch down --all --yes
    """
    if not launch_ids and not down_all:
        raise UserError("name launch ids, or pass --all --yes")
    if down_all and not yes:
        raise UserError("--all destroys every active launch: add --yes")
    failed = 0
    with ledger() as led:
        rows = led.launches(active_only=True) if down_all else []
        rows += [find(led, lid) for lid in launch_ids]
        settle_rows(led, rows, warn=False)
        for row in rows:
            row = led.get(row["id"])
            try:
                click.echo(f"{row['id']}: {targets.of_row(row).down(led, row, yes, click.echo)}")
            except LaunchError as exc:
                failed = max(failed, exc.exit_code)
                click.echo(f"error: {row['id']}: {exc}", err=True)
    if failed:
        sys.exit(failed)


# --- reap -----------------------------------------------------------------------------------
@click.command()
@click.option("--dry-run", is_flag=True, help="only list what would be destroyed")
@click.option("--yes", "-y", is_flag=True, help="destroy without asking (for cron / CI schedules)")
@click.option(
    "--grace-minutes",
    default=None,
    type=click.FloatRange(0),
    help="after a launch's hard deadline (default: its lifecycle.reap_grace_minutes, else 10)",
)
@click.option(
    "--loading-minutes",
    default=None,
    type=click.FloatRange(0, min_open=True),
    help="longest acceptable loading (default: its lifecycle.loading_timeout_minutes, else 30)",
)
@click.option(
    "--stuck-minutes",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="longest acceptable exited/unknown/offline",
)
@click.option(
    "--all-workspaces",
    is_flag=True,
    help="also other workspaces' instances on this account before their deadline (a teammate's, CI's): only when you know",
)
@click.option(
    "--recover",
    is_flag=True,
    help="first move interruptible launches that lost their instance (lifecycle.recover) to another offer, as `watch` does",
)
@click.option("--json", "as_json", is_flag=True)
@guarded
def reap(dry_run, yes, grace_minutes, loading_minutes, stuck_minutes, all_workspaces, recover, as_json):
    """Destroy this workspace's instances (label vast-launch:*) that outlived their launch.

    Reaped: this ledger's launches past the deadline + grace, stuck in loading/exited/unknown/offline,
    or ended but still there; an instance labeled by this workspace but unknown to its ledger. Another
    workspace's instance (one account, several ledgers: teammates, CI) only past its own deadline +
    grace, or with --all-workspaces. Exit 0: nothing found; 2: found (and destroyed unless --dry-run);
    1: error; 4: a destroy could not be confirmed.

    \b
    Examples:
      vast-launch reap --dry-run
      */10 * * * *  vast-launch reap --yes     # crontab
      */10 * * * *  vast-launch reap --yes --recover     # and recover interruptible launches
    """
    from ..protocol import EXIT_NOT_DESTROYED

    def go_ahead(found) -> bool:
        if dry_run:
            return False
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(f"{len(found)} instance(s) to reap: pass --yes to destroy, or --dry-run")
            click.confirm(f"Destroy {len(found)} instance(s)?", abort=True)
        return True

    with ledger() as led:
        if recover and dry_run:
            raise UserError("--recover rents instances: it cannot be a dry run")
        if recover and not yes:
            raise UserError("--recover rents instances: pass --yes with it")
        say = (lambda line: click.echo(line, err=True)) if as_json else click.echo
        found, left = targets.get(targets.DEFAULT).reap(
            led, grace_minutes, loading_minutes, stuck_minutes, all_workspaces, go_ahead, recover=say if recover else None
        )
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in found] + [{**v.as_dict(), "left_alone": True} for v in left], indent=2))
    else:
        for v in found:
            verb = "destroyed" if v.destroyed else "FAILED to destroy" if v.error else "would destroy"
            click.echo(
                f"{verb} instance {v.instance_id} ({v.launch_id or 'no launch'}, {v.status}, "
                f"${v.dph_total:.3f}/h): {v.reason}" + (f" ({v.error})" if v.error else "")
            )
        for v in left:
            click.echo(f"left alone: instance {v.instance_id} ({v.launch_id or 'no launch'}, {v.status}): {v.reason}")
        saved = sum(v.dph_total for v in found)
        click.echo(
            f"{len(found)} instance(s) {'found' if dry_run else 'reaped'}; ${saved:.3f}/h "
            f"{'would be' if dry_run else ''} saved".replace("  ", " ")
            if found
            else "nothing to reap"
        )
    unconfirmed = any(v.unconfirmed for v in found)
    sys.exit(EXIT_NOT_DESTROYED if unconfirmed else 1 if any(v.error for v in found) else 2 if found else 0)
