"""Looking at a Vast instance from here: its log over SSH or the logs API (and, once it is gone, from the
outputs store or what its follower kept), and a shell on it."""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

from ..errors import UserError
from ..protocol import BOOT_LOG
from ..states import ENDED_BY_DESTROY
from ..store import attempt_log
from . import remote
from .progress import new_lines
from .provider import Provider, ProviderError

Echo = Callable[[str], None]


def show_log(ledger, row: dict, provider: Optional[Provider], tail: int, follow: bool, via: str, identity, echo: Echo) -> None:
    """The launch's log: live from its instance, else what the store or the follower kept."""
    if row["state"] in ENDED_BY_DESTROY or provider is None:
        text, where = attempt_log(row)
        if text is not None:
            echo_err(f"(instance {row['instance_id']} is gone: its log from {where})")
            echo("\n".join(text.splitlines()[-tail:]))
            return
        kept = ledger.kept_log_lines(row["id"])
        if not kept:
            raise UserError(f"instance {row['instance_id']} is destroyed; its log went with it (it had no outputs store)")
        echo_err(f"(instance {row['instance_id']} is destroyed: the last {min(tail, len(kept))} lines its launcher kept)")
        echo("\n".join(kept[-tail:]))
        return
    iid = row["instance_id"]
    if via != "api":
        inst = provider.show(iid)
        if inst is not None and inst.ssh is None and via == "ssh":
            raise UserError(f"instance {iid} shows no SSH endpoint; use --via api")
        if inst is not None and inst.ssh is not None:
            try:
                return _over_ssh(row, inst.ssh, tail, follow, identity, lambda: provider.show(iid) is None)
            except UserError as exc:
                if via == "ssh":
                    raise
                echo_err(f"note: {exc}; using the Vast logs API")
    window = _over_api(provider, iid, tail, follow, echo)
    if follow:  # the instance is gone: what it wrote after the last fetch is in the store's copy
        text, _ = attempt_log(ledger.get(row["id"]) or row)
        for line in new_lines(window, text.splitlines(), stored=True)[0] if text else []:
            echo(line)


def echo_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _over_ssh(row, endpoint, tail, follow, identity, gone) -> None:
    cmd = f'F=$({remote.log_path_command(row["id"])}); exec tail -n {int(tail)} {"-F" if follow else ""} "$F"'
    with remote.Session(*endpoint, key_file=identity, known_hosts=remote.known_hosts_file()) as session:
        session.run(cmd, stream_to(sys.stdout), stream_to(sys.stderr), stop=gone if follow else None)


def stream_to(stream):
    """Write raw bytes from the instance straight through, as they arrive."""
    return lambda data: (stream.buffer.write(data), stream.buffer.flush())


def _over_api(provider: Provider, iid: int, tail: int, follow: bool, echo: Echo) -> list[str]:
    """Prints the log (following it until the instance is gone); returns the last lines fetched."""
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
            echo_err("[logs] more lines were written than one fetch returns; some were skipped")
        for line in fresh[-tail:] if first else fresh:
            echo(line)
        window, first = lines, False
        if not follow or provider.show(iid) is None:
            return window
        time.sleep(2.0)


def shell(provider: Provider, row: dict, command: list[str], identity) -> int:
    inst = provider.show(row["instance_id"])
    if inst is None:
        raise UserError(f"instance {row['instance_id']} is gone")
    if inst.ssh is None:
        raise UserError(f"instance {row['instance_id']} shows no SSH endpoint (it needs runtype ssh)")
    with remote.Session(*inst.ssh, key_file=identity, known_hosts=remote.known_hosts_file()) as session:
        if not command:
            return session.shell()
        return session.run(" ".join(command), stream_to(sys.stdout), stream_to(sys.stderr))


def local_log(workdir) -> Optional[str]:
    """A local launch still running (its launcher elsewhere): its instance's log is on this machine."""
    log = workdir / BOOT_LOG if workdir is not None else None
    return log.read_bytes().decode("utf-8", errors="replace") if log is not None and log.exists() else None
