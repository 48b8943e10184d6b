"""SSH into a running instance with paramiko: run a command, tail the launch's log, or open a shell.

Vast instances expose `ssh_host`/`ssh_port` (root login with the account's SSH keys). Their host
keys change with every rental, so they are recorded in vast-launch's own known_hosts file, never
in ~/.ssh/known_hosts.
"""

from __future__ import annotations

import os
import select
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ..errors import UserError
from ..protocol import BOOT_LOG, WORKDIR_NOTE, workdir_name

DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
EOF_GRACE_S = 5.0


def log_path_command(launch_id: str) -> str:
    """Shell that prints the path of the launch's log on the instance (the bootstrap records its workdir)."""
    note = shlex.quote(WORKDIR_NOTE.format(launch_id=launch_id))
    default = "${DATA_DIRECTORY:-$HOME}/" + shlex.quote(workdir_name(launch_id))
    return f'W=$(cat {note} 2>/dev/null || echo {default}); echo "$W/{BOOT_LOG}"'


class Session:
    def __init__(
        self,
        host: str,
        port: int,
        user: str = "root",
        key_file: Optional[str] = None,
        known_hosts: Optional[Path] = None,
        timeout: float = 10.0,
    ):
        import paramiko

        self.client = paramiko.SSHClient()
        self.known_hosts = known_hosts
        if known_hosts is not None and known_hosts.exists():
            self.client.load_host_keys(str(known_hosts))
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        keys = [key_file] if key_file else [str(Path.home() / ".ssh" / k) for k in DEFAULT_KEYS if (Path.home() / ".ssh" / k).exists()]
        try:
            self.client.connect(
                host,
                port=port,
                username=user,
                key_filename=keys or None,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=True,
                look_for_keys=key_file is None,
            )
        except (paramiko.SSHException, socket.error, EOFError) as exc:
            raise UserError(f"ssh {user}@{host}:{port}: {exc or type(exc).__name__}") from None
        if known_hosts is not None:
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            self.client.save_host_keys(str(known_hosts))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(
        self,
        command: str,
        out: Callable[[bytes], None],
        err: Callable[[bytes], None],
        stop: Optional[Callable[[], bool]] = None,
        poll: float = 0.2,
    ) -> int:
        """Stream a command's output; returns its exit status (or -1 when stop() ended it)."""
        chan = self.client.get_transport().open_session()
        chan.exec_command(command)
        last_check = time.time()
        status_at = None
        while True:
            if chan.recv_ready():
                out(chan.recv(65536))
                continue
            if chan.recv_stderr_ready():
                err(chan.recv_stderr(65536))
                continue
            if chan.exit_status_ready():
                # sshd may send the exit status before the last of the output: read on to the end of
                # the output (EOF), unless something the command left running holds it open
                status_at = status_at or time.time()
                if chan.eof_received or chan.closed or time.time() - status_at > EOF_GRACE_S:
                    return chan.recv_exit_status()
            if stop is not None and time.time() - last_check >= 2.0:
                last_check = time.time()
                if stop():
                    chan.close()
                    return -1
            select.select([chan], [], [], poll)

    def shell(self) -> int:
        """An interactive shell on this terminal (raw mode), like `ssh host`."""
        import termios
        import tty

        chan = self.client.invoke_shell(
            term=os.environ.get("TERM", "xterm"), width=os.get_terminal_size().columns, height=os.get_terminal_size().lines
        )
        old = termios.tcgetattr(sys.stdin)
        try:
            tty.setraw(sys.stdin.fileno())
            chan.settimeout(0.0)
            while True:
                ready, _, _ = select.select([chan, sys.stdin], [], [])
                if chan in ready:
                    data = chan.recv(4096)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if sys.stdin in ready:
                    data = os.read(sys.stdin.fileno(), 1024)
                    if not data:
                        break
                    chan.send(data)
        finally:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, old)
        return chan.recv_exit_status() if chan.exit_status_ready() else 0


def known_hosts_file() -> Path:
    from ..state_dir import default_home

    return default_home() / "known_hosts"
