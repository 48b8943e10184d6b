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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .faults import Faults

HOURS_PER_MONTH = 30 * 24
# States in which the GPU is billed; storage is billed in every state until destroyed.
GPU_BILLED = {"running"}


def default_offers(price_dph: float = 0.0, count: int = 2) -> list[dict]:
    """Offers describing this host. CPU-only is fine: the trainer falls back to CPU."""
    cpus = os.cpu_count() or 1
    try:
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1_000_000
    except (ValueError, OSError):
        mem_mb = 0
    disk_gb = shutil.disk_usage("/").free / 1e9
    offers = []
    for i in range(count):
        offers.append({
            "id": 1001 + i, "ask_contract_id": 1001 + i, "machine_id": 501 + i, "host_id": 77,
            "gpu_name": "Local CPU", "num_gpus": 1, "gpu_ram": 0, "gpu_total_ram": 0,
            "cpu_cores_effective": float(cpus), "cpu_ram": mem_mb, "disk_space": round(disk_gb, 1),
            "dph_base": float(price_dph), "storage_cost": 0.0, "inet_up_cost": 0.0, "inet_down_cost": 0.0,
            "min_bid": float(price_dph) / 2, "reliability": 0.999 - 0.001 * i, "reliability2": 0.999 - 0.001 * i,
            "dlperf": 1.0, "cuda_max_good": 12.4, "compute_cap": 0, "driver_version": "local",
            "verified": True, "rentable": True, "rented": False, "external": False,
            "geolocation": "Local, LO", "duration": 30 * 86400.0, "direct_port_count": 0,
            "inet_up": 1000.0, "inet_down": 1000.0, "score": 1.0,
        })
    return offers


def priced_offer(offer: dict, storage_gb: float) -> dict:
    """An offer as search shows it: dph_total is for the requested storage."""
    out = dict(offer)
    storage_dph = offer.get("storage_cost", 0.0) * storage_gb / HOURS_PER_MONTH
    out["end_date"] = time.time() + offer.get("duration", 0)
    out["dph_total"] = round(offer["dph_base"] + storage_dph, 6)
    out["dlperf_per_dphtotal"] = out["dlperf"] / out["dph_total"] if out["dph_total"] > 0 else out["dlperf"] * 1e6
    return out


@dataclass
class Instance:
    id: int
    offer: dict
    label: str
    image: str
    env: dict
    onstart: str
    disk: float
    api_key: str
    workdir: Path
    created_at: float = field(default_factory=time.time)
    status: str = "loading"
    # billing segments: [state, start, end or None]
    segments: list = field(default_factory=list)
    proc: Optional[subprocess.Popen] = None
    destroyed_by: Optional[str] = None
    ended_at: Optional[float] = None
    starts: int = 0
    has_vastai_cli: bool = True
    has_git: bool = True
    loading_timer: Optional[threading.Timer] = None
    ssh_port: Optional[int] = None
    # Every process of this container carries it in its environment: a process that made its own
    # session or process group is still inside the container, as on Vast.
    marker: str = field(default_factory=lambda: secrets.token_hex(8))
    runtype: str = "ssh"

    @property
    def gpu_dph(self) -> float:
        return float(self.offer["dph_base"])

    @property
    def storage_dph(self) -> float:
        return float(self.offer.get("storage_cost", 0.0)) * self.disk / HOURS_PER_MONTH

    @property
    def log_path(self) -> Path:
        return self.workdir / "onstart.log"

    def set_state(self, state: str, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        if self.segments and self.segments[-1][2] is None:
            self.segments[-1][2] = now
        if state != "destroyed":
            self.segments.append([state, now, None])
        self.status = state

    def charges(self, now: Optional[float] = None) -> dict:
        now = time.time() if now is None else now
        gpu_s = storage_s = 0.0
        for state, start, end in self.segments:
            seconds = (end if end is not None else now) - start
            storage_s += seconds
            if state in GPU_BILLED:
                gpu_s += seconds
        gpu = self.gpu_dph * gpu_s / 3600
        storage = self.storage_dph * storage_s / 3600
        return {"gpu_seconds": gpu_s, "storage_seconds": storage_s, "gpu_usd": gpu,
                "storage_usd": storage, "total_usd": gpu + storage}

    def row(self) -> dict:
        """The instance as the Vast API shows it."""
        return {
            "id": self.id, "actual_status": self.status, "intended_status": "running",
            "cur_state": "running" if self.status in ("running", "loading") else "stopped",
            "status_msg": f"local instance is {self.status}", "label": self.label,
            "gpu_name": self.offer["gpu_name"], "num_gpus": self.offer["num_gpus"],
            "dph_base": self.gpu_dph, "dph_total": round(self.gpu_dph + self.storage_dph, 6),
            "storage_cost": self.offer.get("storage_cost", 0.0), "storage_total_cost": self.storage_dph,
            "inet_up_cost": 0.0, "inet_down_cost": 0.0, "disk_space": self.disk,
            "start_date": self.created_at, "end_date": self.created_at + self.offer.get("duration", 0),
            "machine_id": self.offer["machine_id"], "host_id": self.offer["host_id"],
            "ssh_host": "127.0.0.1" if self.ssh_port else None, "ssh_port": self.ssh_port,
            "public_ipaddr": "127.0.0.1",
            "image_uuid": self.image, "gpu_util": 0.0,
            "extra_env": [[k, v] for k, v in self.env.items()],
        }


MARKER_ENV = "LOCALCLOUD_CONTAINER"


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


class Cloud:
    """Offers and instances of this machine. Thread-safe; owned by the HTTP server."""

    def __init__(self, root: Path, account_key: str, offers: Optional[list[dict]] = None,
                 loading_seconds: float = 0.3, public_url: str = "", bin_dir: Optional[str] = None,
                 ssh_port: Optional[int] = None):
        self.root = Path(root)
        # An sshd on this machine that reaches the instances' files (tests start one on loopback).
        self.ssh_port = ssh_port
        self.root.mkdir(parents=True, exist_ok=True)
        self.account_key = account_key
        self.offers = {o["id"]: dict(o) for o in (offers if offers is not None else default_offers())}
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
            self.offers[offer_id].update(fields)
            return dict(self.offers[offer_id])

    # --- instances --------------------------------------------------------------------------
    def create(self, offer_id: int, body: dict) -> Instance:
        with self.lock:
            offer = self.offers[offer_id]
            iid = self._take_id()
            env = {k: str(v) for k, v in (body.get("env") or {}).items() if not k.startswith("-")}
            inst = Instance(
                id=iid, offer=dict(offer), label=body.get("label") or "", image=body.get("image") or "",
                env=env, onstart=body.get("onstart") or "", disk=float(body.get("disk") or 10),
                api_key=secrets.token_hex(24), workdir=self.root / f"instance-{iid}", ssh_port=self.ssh_port,
            )
            if body.get("runtype") == "args" or body.get("args"):
                inst.runtype = "args"
            inst.workdir.mkdir(parents=True, exist_ok=True)
            inst.has_vastai_cli = not self.faults.no_vastai_cli
            inst.has_git = not self.faults.no_git
            inst.set_state("loading")
            self.instances[iid] = inst
            loading_forever = self.faults.loading_forever
        if not loading_forever:
            inst.loading_timer = threading.Timer(self.loading_seconds, self._loaded, args=(iid,))
            inst.loading_timer.start()
        return inst

    def _instance_env(self, inst: Instance) -> dict:
        bin_dir = self.bin_dir if inst.has_vastai_cli else str(self._bin_without_vastai(inst))
        system = ["/usr/local/bin", "/usr/bin", "/bin"] if inst.has_git else [str(self._system_without_git(inst))]
        path = os.pathsep.join([bin_dir, *system])
        env = {
            "PATH": path, "HOME": str(inst.workdir), "LANG": "C.UTF-8", "TERM": "dumb",
            "CONTAINER_ID": str(inst.id), "CONTAINER_API_KEY": inst.api_key,
            "VAST_CONTAINERLABEL": f"C.{inst.id}", "PUBLIC_IPADDR": "127.0.0.1",
            "GPU_COUNT": str(inst.offer["num_gpus"]), "DATA_DIRECTORY": str(inst.workdir),
            "VAST_URL": self.public_url, "VASTAI_NO_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
        }
        env.update(inst.env)
        env[MARKER_ENV] = inst.marker
        return env

    def _bin_without_vastai(self, inst: Instance) -> Path:
        """An image whose PATH has this interpreter but no `vastai` command."""
        d = inst.workdir / ".bin"
        d.mkdir(exist_ok=True)
        for name in ("python", "python3"):
            (d / name).write_text(f'#!/bin/sh\nexec "{self.bin_dir}/python" "$@"\n')
            os.chmod(d / name, 0o755)
        return d

    def _system_without_git(self, inst: Instance) -> Path:
        """A slim image's system commands: this host's, less git and apt (so nothing can install git)."""
        d = inst.workdir / ".sysbin"
        if d.is_dir():
            return d
        d.mkdir()
        left_out = ("git", "apt", "dpkg", "dnf", "yum", "apk")
        for src in ("/usr/local/bin", "/usr/bin", "/bin"):
            for entry in os.scandir(src) if os.path.isdir(src) else ():
                if entry.name.startswith(left_out) or os.path.lexists(d / entry.name):
                    continue
                os.symlink(entry.path, d / entry.name)
        return d

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
            script.write_text(inst.onstart)
            (inst.workdir / ".vast_api_key").write_text(inst.api_key)
            os.chmod(inst.workdir / ".vast_api_key", 0o600)
            log = open(inst.log_path, "ab")
            inst.proc = subprocess.Popen(
                ["bash", str(script)], cwd=inst.workdir, env=self._instance_env(inst),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            log.close()
            inst.starts += 1
            inst.set_state("running")
            proc = inst.proc
        threading.Thread(target=self._reap_process, args=(iid, proc), daemon=True).start()

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
        return True

    def stop(self, iid: int, grace: float = 2.0) -> None:
        """As `docker stop`: TERM, a grace period, then KILL; storage stays (and is billed)."""
        with self.lock:
            inst = self.instances[iid]
            proc, inst.proc = inst.proc, None
            if inst.status != "destroyed":
                inst.set_state("stopped")
        kill_container(inst.marker, proc, grace=grace)

    def start(self, iid: int) -> None:
        """As Vast: a stopped or exited container starts again (its onstart runs again)."""
        with self.lock:
            inst = self.instances[iid]
            if inst.status not in ("stopped", "exited"):
                return
        self._start(iid)

    def restart(self, iid: int) -> None:
        """A container restart (`reboot`): the processes die and onstart runs again in the same filesystem."""
        self.stop(iid)
        self.start(iid)

    def recycle(self, iid: int) -> None:
        """As Vast's recycle: the container is recreated in place from its image, its files gone."""
        self.stop(iid, grace=0.5)
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
        until = time.time() if until is None else until
        rows = []
        with self.lock:
            for inst in self.instances.values():
                if inst.created_at > until or (inst.ended_at is not None and inst.ended_at < since):
                    continue
                c = inst.charges()
                for kind, seconds, rate, amount in (
                    ("gpu", c["gpu_seconds"], inst.gpu_dph, c["gpu_usd"]),
                    ("storage", c["storage_seconds"], inst.storage_dph, c["storage_usd"]),
                ):
                    rows.append({
                        "description": f"Instance {inst.id} {kind} ({inst.offer['gpu_name']})",
                        "quantity": round(seconds / 3600, 8), "rate": rate, "amount": round(amount, 8),
                        "timestamp": inst.ended_at or time.time(), "type": "charge",
                        "instance_id": inst.id, "charge_kind": kind, "seconds": seconds,
                    })
        return rows

    def describe(self) -> list[dict]:
        """Everything about every instance, destroyed ones included (for tests and debugging)."""
        with self.lock:
            out = []
            for inst in self.instances.values():
                row = inst.row()
                row.pop("extra_env")
                row.update(destroyed_by=inst.destroyed_by, ended_at=inst.ended_at, starts=inst.starts,
                           workdir=str(inst.workdir), charges=inst.charges(),
                           segments=json.loads(json.dumps(inst.segments)),
                           pid=inst.proc.pid if inst.proc else None)
                out.append(row)
            return out
