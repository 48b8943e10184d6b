"""What every command shares: the one-line failure, the config, the ledger, settling rows with their
targets, and the error handling around a command's body."""

from __future__ import annotations

import functools
import os
import sys

import click

from ..errors import CheckFailed, UserError

# Without --config: the file `vast-launch init` writes, else this project's own.
DEFAULT_CONFIGS = ("vast-launch.yaml", "configs/burgers.yaml")
CONFIG_HELP = "launch YAML (default: vast-launch.yaml, else configs/burgers.yaml)"


def config_option(fn):
    """--config, shared by every command that reads one; resolved by `load`."""
    return click.option("--config", "config", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP)(fn)


def default_config() -> str:
    for name in DEFAULT_CONFIGS:
        if os.path.isfile(name):
            return name
    raise UserError("no config here: pass --config PATH, or write one with `vast-launch init` (vast-launch.yaml)")


class Debug:
    """--debug (or VAST_LAUNCH_DEBUG=1): tracebacks instead of one line, and retry notices everywhere."""

    on = os.environ.get("VAST_LAUNCH_DEBUG") == "1"


def fail(msg: str, code: int = 1) -> None:
    for line in msg.splitlines() or [""]:  # several problems (a config's): one line each
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def load(config: str | None):
    from ..config import load_config

    return load_config(config or default_config())


def ledger(create: bool = False):
    """The ledger; only a launch creates it (and the state dir): the other commands read an empty one."""
    from ..ledger import Ledger

    return Ledger(create=create)


def find(led, launch_id: str) -> dict:
    row = led.find(launch_id)
    if row is None:
        raise UserError(f"no launch matches {launch_id!r} (see `vast-launch status`)")
    return row


def retry_notice(what: str) -> None:
    """Retries show as progress at a terminal; in logs and pipes only the outcome counts."""
    if Debug.on or sys.stderr.isatty():
        click.echo(f"  retrying {what}", err=True)


def settle_rows(led, rows, warn: bool = True) -> None:
    """Open rows whose launcher died are settled with their targets before they are shown or used.

    Commands that go on to ask the target themselves pass warn=False: their own error says it.
    """
    from .. import targets
    from ..states import TERMINAL

    by_target: dict = {}
    for row in (r for r in rows if r["state"] not in TERMINAL):  # nothing to settle: no target is even imported
        by_target.setdefault(row.get("target") or targets.DEFAULT, []).append(row)
    for name, group in by_target.items():
        for note in targets.get(name).settle(led, group):
            if warn:
                click.echo(f"warning: {note}", err=True)


def guarded(fn):
    """A command's body: Ctrl-C exits 130 with one line, failed checks one line each (other errors are
    the CLI's: one line, see cli.py)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from ..targets.base import Target

        Target.retry_notice = staticmethod(retry_notice)
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except CheckFailed as exc:
            for line in exc.failures:
                click.echo(f"check failed: {line}", err=True)
            sys.exit(1)

    return run
