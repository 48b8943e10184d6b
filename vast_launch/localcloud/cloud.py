"""The local cloud's state: offers, instances as process groups, per-second billing."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .bills import charge_rows, invoice_rows
from .containers import (
    CONTAINER_SH,
    ISOLATE,
    MARKER_ENV,
    credential_paths,
    isolation_available,
    kill_container,
    onstart_pid,
    remove_tmp_files,
)
from .faults import Faults
from .image import container_env
from .instance import Instance, port_bindings
from .market import InterruptibleMarket
from .offers import default_offers


class Cloud(InterruptibleMarket):
    """Offers and instances of this machine. Thread-safe; owned by the HTTP server."""

    def __init__(
        self,
        root: Path,
        account_key: str,
        offers: Optional[list[dict]] = None,
        loading_seconds: float = 0.3,
        public_url: str = "",
        bin_dir: Optional[str] = None,
        ssh_port: Optional[int] = None,
        rentals_per_offer: int = 4,
        hidden_paths: tuple = (),
        keep_destroyed: bool = True,
    ):
        self.root = Path(root)
        # On Vast a destroyed instance's disk is gone; keeping it is a debugging aid (tests read it afterwards).
        self.keep_destroyed = keep_destroyed
        # Each container sees only its own files and processes (containers.isolation_available); these
        # paths of this machine are hidden from it too: the account key file, the user's credentials.
        self.isolated = isolation_available()
        self.hidden_paths = [str(p) for p in (*hidden_paths, *credential_paths())]
        # An sshd on this machine that reaches the instances' files (tests start one on loopback).
        self.ssh_port = ssh_port
        self.root.mkdir(parents=True, exist_ok=True)
        self.account_key = account_key
        self.offers = {o["id"]: dict(o) for o in (offers if offers is not None else default_offers())}
        # Each offer stands for a machine that hosts this many rentals at once (as a 4-GPU machine hosts
        # four 1-GPU rentals). A full machine's offer leaves search until one of them is destroyed.
        self.slots = {oid: rentals_per_offer for oid in self.offers}
        self.loading_seconds = loading_seconds
        self.public_url = public_url
        self.bin_dir = bin_dir or os.path.dirname(sys.executable)
        self.instances: dict[int, Instance] = {}
        self.faults = Faults()
        self.events: list[dict] = []
        self.lock = threading.RLock()
        self.closed = False

    def _take_id(self) -> int:
        """Instance ids (and so work dirs) are never reused within a cloud root, across processes too."""
        counter = self.root / ".next_id"
        with open(counter, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read().strip()
            used = [int(d.name.split("-")[1]) for d in self.root.glob("instance-*") if d.name[9:].isdigit()]
            iid = max([int(text) if text.isdigit() else 30001, *(u + 1 for u in used)])
            f.seek(0)
            f.truncate()
            f.write(str(iid + 1))
        return iid

    # --- auth -------------------------------------------------------------------------------
    def who(self, key: Optional[str]) -> Optional[str]:
        """'account', 'instance:<id>' or None for an unknown key."""
        if not key:
            return None
        if secrets.compare_digest(key, self.account_key):
            return "account"
        with self.lock:
            for inst in self.instances.values():
                # An instance key dies with its instance.
                if inst.status != "destroyed" and secrets.compare_digest(key, inst.api_key):
                    return f"instance:{inst.id}"
        return None

    def record(self, **event) -> None:
        event.setdefault("t", time.time())
        with self.lock:
            self.events.append(event)

    # --- offers -----------------------------------------------------------------------------
    def set_offer(self, offer_id: int, **fields) -> dict:
        with self.lock:
            if "slots" in fields:
                self.slots[offer_id] = int(fields.pop("slots"))
            self.offers[offer_id].update(fields)
            return dict(self.offers[offer_id])

    def rentable(self, offer_id: int) -> bool:
        """Still offered: not taken away, and its machine has room. Every instance not yet destroyed
        holds its place, stopped ones included."""
        with self.lock:
            offer = self.offers.get(offer_id)
            if offer is None or offer.get("rented"):
                return False
            held = sum(1 for i in self.instances.values() if i.offer["id"] == offer_id and i.status != "destroyed")
            return held < self.slots.get(offer_id, 1)

    def rent(self, offer_id: int, body: dict) -> Optional[Instance]:
        """Create on an offer if it is still there, in one step, so two creates cannot both take the
        last place."""
        with self.lock:
            return self.create(offer_id, body) if self.rentable(offer_id) else None

    # --- instances --------------------------------------------------------------------------
    def create(self, offer_id: int, body: dict) -> Instance:
        with self.lock:
            offer = self.offers[offer_id]
            iid = self._take_id()
            env = {k: str(v) for k, v in (body.get("env") or {}).items() if not k.startswith("-")}
            inst = Instance(
                id=iid,
                offer=dict(offer),
                label=body.get("label") or "",
                image=body.get("image") or "",
                env=env,
                onstart=body.get("onstart") or "",
                disk=float(body.get("disk") or 10),
                api_key=secrets.token_hex(24),
                workdir=self.root / f"instance-{iid}",
                ssh_port=self.ssh_port,
            )
            if body.get("price") is not None:  # a bid: an interruptible instance
                inst.bid = float(body["price"])
            if body.get("runtype") == "args" or body.get("args"):
                inst.runtype = "args"
                inst.args = body.get("args")
            elif isinstance(body.get("runtype"), str) and body["runtype"].strip():
                inst.runtype = body["runtype"].strip()
            inst.ports = port_bindings(body.get("env") or {})
            inst.workdir.mkdir(parents=True, exist_ok=True)
            inst.has_vastai_cli = not self.faults.no_vastai_cli
            inst.has_git = not self.faults.no_git
            inst.has_host_packages = not self.faults.bare_python
            inst.layers_off = self.faults.layers_off
            inst.set_state("loading")
            self.instances[iid] = inst
            loading_forever = self.faults.loading_forever
            if inst.bid is not None and inst.bid < float(offer.get("min_bid") or 0.0):
                # As on Vast: a bid under the machine's current minimum makes the instance, stopped, and the
                # create answers an error that names it (dstack's client destroys it).
                inst.outbid, inst.intended = True, "stopped"
                inst.set_state("stopped")
                return inst
        if not loading_forever:
            inst.loading_timer = threading.Timer(self.loading_seconds, self._loaded, args=(iid,))
            inst.loading_timer.start()
        return inst

    def _loaded(self, iid: int) -> None:
        """The image is pulled: the container starts, unless it was stopped or destroyed meanwhile."""
        with self.lock:
            inst = self.instances.get(iid)
            if inst is None or inst.status != "loading":
                return
        self._start(iid)

    def _start(self, iid: int) -> None:
        """Container start: run onstart in its own process group (also on restarts)."""
        with self.lock:
            inst = self.instances.get(iid)
            if self.closed or inst is None or inst.status not in ("loading", "stopped", "exited"):
                return
            script = inst.workdir / "onstart.sh"
            script.write_text(inst.main_command())
            (inst.workdir / ".vast_api_key").write_text(inst.api_key)
            os.chmod(inst.workdir / ".vast_api_key", 0o600)
            log = open(inst.log_path, "ab")
            env = container_env(inst, self.public_url, self.bin_dir)
            # Isolated, the container's init gets the instance's environment on its stdin and hands it to the
            # onstart alone: no long-lived process of the platform shows the instance's secrets in its environ.
            inst.proc = subprocess.Popen(
                self._container_argv(inst, ["bash", str(script)]),
                cwd=inst.workdir,
                env={k: env[k] for k in ("PATH", MARKER_ENV)} if self.isolated else env,
                stdin=subprocess.PIPE if self.isolated else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            if self.isolated:
                with inst.proc.stdin as pipe:
                    pipe.write(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
            inst.starts += 1
            inst.set_state("running")
            proc = inst.proc
        threading.Thread(target=self._reap_process, args=(iid, proc), daemon=True).start()

    def _container_argv(self, inst: Instance, command: list[str]) -> list[str]:
        if not self.isolated:
            return command
        keep = "0" if inst.runtype == "args" else "1"
        return [*ISOLATE, "bash", str(CONTAINER_SH), str(self.root), str(inst.workdir), keep, *self.hidden_paths, "--", *command]

    def shell_pid(self, iid: int) -> Optional[int]:
        """This machine's pid of the instance's onstart (the bootstrap: it execs itself), while it runs."""
        with self.lock:
            inst = self.instances.get(iid)
            proc = inst.proc if inst else None
        if proc is None:
            return None
        if not self.isolated:
            return proc.pid if proc.poll() is None else None
        return onstart_pid(inst.marker, inst.workdir)

    def _reap_process(self, iid: int, proc: subprocess.Popen) -> None:
        """As on Vast (ssh/jupyter run types), the onstart ending does not end the container: it stays
        `running`, and billing, until destroyed or stopped. Only an `args` run type's main process
        ending makes the instance `exited`."""
        proc.wait()
        with self.lock:
            inst = self.instances.get(iid)
            if inst is not None and inst.proc is proc and inst.status == "running" and inst.runtype == "args":
                inst.set_state("exited")

    def destroy(self, iid: int, by: str, answer: Optional[Callable[[], None]] = None) -> bool:
        """Gone at once, as `docker rm -f`: every process of the container is killed before this returns.

        `answer` runs once the instance is marked gone and before its processes die: the HTTP answer
        reaches a caller inside the container, as it does on the real service."""
        with self.lock:
            inst = self.instances.get(iid)
            if inst is None or inst.status == "destroyed":
                return False
            inst.set_state("destroyed")
            inst.destroyed_by = by
            inst.ended_at = time.time()
            proc, inst.proc = inst.proc, None
        if answer is not None:
            answer()
        kill_container(inst.marker, proc, grace=0)
        remove_tmp_files(inst.workdir)
        if not self.keep_destroyed:
            shutil.rmtree(inst.workdir, ignore_errors=True)
        return True

    def stop(self, iid: int, grace: float = 2.0, intended: str = "stopped") -> None:
        """As `docker stop`: TERM, a grace period, then KILL; storage stays (and is billed). `intended`: what
        Vast then shows as intended_status (a reboot's stop is followed by a start)."""
        with self.lock:
            inst = self.instances[iid]
            proc, inst.proc = inst.proc, None
            if inst.status != "destroyed":
                inst.set_state("stopped")
                inst.intended = intended
        kill_container(inst.marker, proc, grace=grace)

    def start(self, iid: int) -> None:
        """As Vast: a stopped or exited container starts again (its onstart runs again). An outbid one waits
        for its bid to win; one whose GPU another renter took cannot start."""
        with self.lock:
            inst = self.instances[iid]
            if inst.status not in ("stopped", "exited"):
                return
            inst.intended = "running"
            if inst.outbid or inst.machine_lost:
                return
        self._start(iid)

    def restart(self, iid: int) -> None:
        """A container restart (`reboot`): the processes die and onstart runs again in the same filesystem."""
        self.stop(iid, intended="running")
        self.start(iid)

    def recycle(self, iid: int) -> None:
        """As Vast's recycle: the container is recreated in place from its image, its files gone."""
        self.stop(iid, grace=0.5, intended="running")
        inst = self.instances[iid]
        for entry in inst.workdir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        self.start(iid)

    def mark_exited(self, iid: int) -> None:
        with self.lock:
            inst = self.instances[iid]
            proc, inst.proc = inst.proc, None
            inst.set_state("exited")
        kill_container(inst.marker, proc, grace=0.5)

    def signal_group(self, iid: int, sig: int = signal.SIGTERM) -> None:
        """A signal to the onstart's whole process group and nothing more (a host or Docker stop's first step)."""
        with self.lock:
            proc = self.instances[iid].proc
        if proc is not None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def live(self) -> list[Instance]:
        with self.lock:
            return [i for i in self.instances.values() if i.status != "destroyed"]

    def shutdown(self) -> None:
        """The cloud's process is ending: no container outlives it (destroyed ones still dying included)."""
        with self.lock:
            self.closed = True
            insts = list(self.instances.values())
        for inst in insts:
            if inst.status != "destroyed":
                self.destroy(inst.id, by="server-shutdown")
            else:
                kill_container(inst.marker, None, grace=0)

    def invoice_rows(self, since: float = 0.0, until: Optional[float] = None) -> list[dict]:
        with self.lock:
            return invoice_rows(list(self.instances.values()), since, until)

    def charge_rows(self, since: float = 0.0, until: Optional[float] = None) -> list[dict]:
        with self.lock:
            return charge_rows(list(self.instances.values()), since, until)

    def describe(self) -> list[dict]:
        """Everything about every instance, destroyed ones included (for tests and debugging)."""
        with self.lock:
            out = []
            for inst in self.instances.values():
                row = inst.row()
                row.pop("extra_env")
                row.update(
                    destroyed_by=inst.destroyed_by,
                    ended_at=inst.ended_at,
                    starts=inst.starts,
                    workdir=str(inst.workdir),
                    charges=inst.charges(),
                    segments=json.loads(json.dumps(inst.segments)),
                    pid=self.shell_pid(inst.id),
                )
                out.append(row)
            return out
