"""Is the launcher that wrote a ledger row still alive? Its pid, host and process start time say."""

from __future__ import annotations

import os
import socket
from typing import Optional


def process_start_time(pid: int) -> Optional[float]:
    """The process's start in clock ticks since boot (tells a live launcher from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return float(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def launcher_alive(row: dict) -> Optional[bool]:
    """True/False for a launcher on this machine; None when the row cannot tell (another host)."""
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    pid = extra.get("launcher_pid")
    if extra.get("launcher_left"):  # it returned (detached): whatever that process does now, it does not follow
        return False
    if not pid or extra.get("launcher_host") != socket.gethostname():
        return None
    started = extra.get("launcher_started")
    if started is None:
        try:
            os.kill(int(pid), 0)
            return True
        except OSError:
            return False
    return process_start_time(int(pid)) == started
