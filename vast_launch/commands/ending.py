"""`down` and `reap`: the user's and the schedule's teardown."""

from __future__ import annotations

import json
import os
import sys

import click

from ..errors import UserError
from .common import _ledger, _provider_for, _run, _settle


@click.command()
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

    from ..vast.provider import DestroyUnconfirmed

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
                except (UserError, DestroyUnconfirmed) as exc:
                    failed = max(failed, exc.exit_code)
                    click.echo(f"error: {row['id']}: {exc}", err=True)
        if failed:
            sys.exit(failed)

    _run(go)


def _down_one(ledger, row, yes: bool) -> str:
    """Destroy one launch's instance after checking it is ours; returns what happened."""
    from ..protocol import label_for, launch_id_of
    from ..vast.provider import DestroyUnconfirmed, ProviderError
    from ..vast.teardown import destroy_and_record, instances_by_label

    if row["target"] == "slurm":
        from ..slurm import launch as slurm

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
        click.confirm(
            f"Destroy instance {iid} ({inst.get('gpu_name')}, {inst.get('actual_status')}, "
            f"${float(inst.get('dph_total') or 0):.3f}/h) of {row['id']}?",
            abort=True,
        )
    final = ledger.get(row["id"])["state"] not in ("destroyed", "aborted", "failed")
    try:
        destroy_and_record(provider, ledger, row["id"], int(iid), "destroyed by `vast-launch down`", final=final)
    except DestroyUnconfirmed:
        raise
    except ProviderError as exc:
        raise UserError(f"instance {iid} was NOT destroyed: {exc}")
    return f"instance {iid} destroyed (confirmed gone)"


def _down_local(ledger, row) -> str:
    """A local launch lives inside its launcher: end that launcher, which ends its cloud and instance."""
    import signal
    import time

    from ..launcher_process import launcher_alive

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
@click.option("--json", "as_json", is_flag=True)
def reap(dry_run, yes, grace_minutes, loading_minutes, stuck_minutes, all_workspaces, as_json):
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
    """
    from ..protocol import EXIT_NOT_DESTROYED
    from ..vast import reaper

    def go():
        provider = _provider_for(url=os.environ.get("VAST_URL"))
        with _ledger() as ledger:
            _settle(
                ledger,
                [r for r in ledger.launches(active_only=True) if r["provider_url"] == provider.url or r["target"] == "local"],
                warn=False,
            )
            found, left = reaper.plan(provider, ledger, grace_minutes, loading_minutes, stuck_minutes, all_workspaces=all_workspaces)
            if found and not dry_run:
                if not yes:
                    if not sys.stdin.isatty():
                        raise UserError(f"{len(found)} instance(s) to reap: pass --yes to destroy, or --dry-run")
                    click.confirm(f"Destroy {len(found)} instance(s)?", abort=True)
                reaper.reap(provider, ledger, found)
        return found, left

    found, left = _run(go)
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
