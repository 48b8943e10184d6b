"""What every command shares: the one-line failure, the ledger, the provider of a launch, settling."""

from __future__ import annotations

import os
import sys

import click

from ..errors import CheckFailed, UserError

# Without --config: the file `vast-launch init` writes, else this project's own.
DEFAULT_CONFIGS = ("vast-launch.yaml", "configs/burgers.yaml")
CONFIG_HELP = "launch YAML (default: vast-launch.yaml, else configs/burgers.yaml)"


def config_option(fn):
    """--config, shared by every command that reads one; resolved by `_load`."""
    return click.option("--config", "config", default=None, type=click.Path(dir_okay=False), help=CONFIG_HELP)(fn)


def default_config() -> str:
    for name in DEFAULT_CONFIGS:
        if os.path.isfile(name):
            return name
    raise UserError("no config here: pass --config PATH, or write one with `vast-launch init` (vast-launch.yaml)")


class Debug:
    """--debug (or VAST_LAUNCH_DEBUG=1): tracebacks instead of one line, and retry notices everywhere."""

    on = os.environ.get("VAST_LAUNCH_DEBUG") == "1"


def _fail(msg: str, code: int = 1) -> None:
    for line in msg.splitlines() or [""]:  # several problems (a config's): one line each
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def _load(config: str | None):
    from ..config import load_config

    return load_config(config or default_config())


def _ledger(create: bool = False):
    """The ledger; only a launch creates it (and the state dir): the other commands read an empty one."""
    from ..ledger import Ledger

    return Ledger(create=create)


def _provider_for(row=None, url=None):
    from ..credentials import find_api_key
    from ..vast.sdk import VastProvider

    if row is not None and row.get("target") == "local":
        # The embedded cloud's key died with it; the account key must never go to its old port.
        from ..launcher_process import launcher_alive

        pid = (row.get("extra") or {}).get("launcher_pid") if isinstance(row.get("extra"), dict) else None
        if launcher_alive(row):
            raise UserError(
                f"{row['id']} runs on the embedded local cloud of launcher pid {pid}: "
                f"stop it there (Ctrl-C), or `vast-launch down {row['id']}`"
            )
        raise UserError(f"{row['id']} ran on the embedded local cloud, which ended with its launcher; its instance ended with it")
    key = find_api_key()
    if not key:
        raise UserError("no Vast API key: set VAST_API_KEY or run `vastai set api-key KEY`")
    return VastProvider(key, url or (row or {}).get("provider_url"), on_retry=_retry_notice)


def _retry_notice(what: str) -> None:
    """Retries show as progress at a terminal; in logs and pipes only the outcome counts."""
    if Debug.on or sys.stderr.isatty():
        click.echo(f"  retrying {what}", err=True)


def _settle(ledger, rows, warn: bool = True) -> None:
    """Open rows whose launcher died are settled with the provider before they are shown or used.

    Commands that go on to call the provider themselves pass warn=False: their own error says it.
    """
    from ..vast.settle import settle

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
