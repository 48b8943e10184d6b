"""An instance's container on this machine: a process group, plus every process carrying its marker
(a daemon that left the group still belongs to it), found in /proc and killed TERM then KILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

MARKER_ENV = "LOCALCLOUD_CONTAINER"
HOST_TMP = Path("/tmp")
CONTAINER_SH = Path(__file__).resolve().parent / "container.sh"
ISOLATE = ("unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private")
_ISOLATION: Optional[bool] = None


def isolation_available() -> bool:
    """Can containers get their own mount and PID namespaces here (root, or the capability)? Without them
    the local cloud runs instances unisolated, as before; the isolation test says so."""
    global _ISOLATION
    if _ISOLATION is None:
        try:
            _ISOLATION = subprocess.run([*ISOLATE, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _ISOLATION = False
    return _ISOLATION


def credential_paths() -> list[Path]:
    """Where this machine keeps credentials a process could read: hidden from every container."""
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    found = [home / ".vast_api_key", xdg / "vastai", home / ".config" / "vastai", home / ".aws", home / ".netrc"]
    found += [home / ".ssh", home / ".config" / "gcloud", home / ".docker" / "config.json", home / ".git-credentials"]
    return list(dict.fromkeys(p for p in found))


def onstart_pid(marker: str, workdir: Path) -> Optional[int]:
    """The onstart's pid on this machine (it execs into the bootstrap, whose subshells share its command
    line): the oldest of the container's processes running either script."""
    found = []
    for pid in container_pids(marker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as f:
                started = int(f.read().rsplit(b")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            continue
        script = argv[1] if argv[:1] == [b"bash"] and len(argv) > 1 else b""
        if script == str(workdir / "onstart.sh").encode() or script.endswith(b"/bootstrap.sh"):
            found.append((started, pid))
    return min(found)[1] if found else None


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that may never reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def container_pids(marker: str, pgid: Optional[int] = None) -> list[int]:
    """Live processes of one container: its process group, and every process carrying its marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if pgid is not None and os.getpgid(pid) == pgid:
                found.append(pid)
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return [p for p in found if _alive(p)]


def kill_container(marker: str, proc: Optional[subprocess.Popen], grace: float) -> None:
    """TERM (when there is a grace period), then KILL, every process of a container; reaped before returning."""
    pgid = proc.pid if proc is not None else None
    signals = ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)) if grace > 0 else ((signal.SIGKILL, 10.0),)
    for sig, wait in signals:
        pids = container_pids(marker, pgid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline:
            if proc is not None:
                proc.poll()  # our own child: reap it, or it stays a zombie
            if not container_pids(marker, pgid):
                break
            time.sleep(0.02)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def remove_tmp_files(workdir: Path) -> None:
    """On Vast a container's /tmp goes with it. Here the instances share this machine's /tmp, so what the
    bootstrap left there for this instance (`vl-<launch>.dir`, naming a dir in its files) goes at destroy."""
    for f in HOST_TMP.glob("vl-*.dir"):
        try:
            if f.is_file() and not f.is_symlink() and f.read_text().strip().startswith(f"{workdir}/"):
                f.unlink()
        except OSError:
            continue
