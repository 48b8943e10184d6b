"""`watch`: the supervisor that recovers interruptible launches nobody follows."""

from __future__ import annotations

import signal
import time

import click

from .. import targets
from .common import guarded, ledger


@click.command()
@click.option("--interval", default=30.0, show_default=True, type=click.FloatRange(0.05), help="seconds between passes")
@click.option("--once", is_flag=True, help="one pass, then exit (for cron or CI)")
@click.option("--until-done", is_flag=True, help="exit once no open launch is left to watch")
@guarded
def watch(interval, once, until_done):
    """Recover detached interruptible launches (lifecycle.recover) whose instance was outbid or stopped too
    long, exited, went offline or vanished without a result: each is destroyed and the launch resumes on
    another offer from its outputs store, while its attempts and budget last.

    Driven by the ledger alone: run it where the ledger is (a laptop, CI, a small always-on machine). Two
    watches, or a watch beside `reap --recover`, never act on one launch at once; a watch killed at any
    moment and started again neither leaks an instance nor rents two. A launch its own launcher still
    follows is left to that launcher.

    \b
    Examples:
      vast-launch watch                       # until Ctrl-C
      vast-launch watch --until-done --interval 10
      */5 * * * *  vast-launch watch --once   # crontab
    """
    state = {"busy": False, "stop": False}

    def on_signal(sig, frame):
        # Mid-pass, a recovery may be renting: it finishes, then the watch ends. A second signal ends it now.
        if state["busy"] and not state["stop"]:
            state["stop"] = True
            click.echo("stopping after this pass (again to stop now)", err=True)
            return
        raise KeyboardInterrupt

    with ledger(create=True) as led:
        sup = targets.get(targets.DEFAULT).supervisor(led, click.echo)
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        shown = None
        try:
            while not state["stop"]:
                state["busy"] = True
                watched = sup.pass_once()
                state["busy"] = False
                if watched != shown:
                    click.echo(f"watching {watched} open interruptible launch(es)")
                    shown = watched
                if once or (until_done and watched == 0):
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        click.echo("watch stopped; the launches go on, their teardown armed", err=True)
