"""One rented instance of the local cloud: its offer, state, container and bill."""

from __future__ import annotations

import secrets
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .offers import HOURS_PER_MONTH

CLOSED_PORT = 1  # an ssh port for an instance of a cloud without an sshd: nothing listens there
DIRECT_PORTS = (40000, 40999)  # where `-p` bindings land on the host, as an offer's direct port range


def port_bindings(env: dict, first: int = DIRECT_PORTS[0]) -> dict:
    """`-p HOST:CONTAINER` entries of a create's env as Docker reports bindings (dstack's client reads
    ports["10022/tcp"][0]["HostPort"] right after create): each container port on its own host port."""
    out: dict = {}
    for key in env:
        parts = str(key).split()
        if len(parts) == 2 and parts[0] == "-p" and ":" in parts[1]:
            container = parts[1].split(":")[1]
            proto = "udp" if container.endswith("/udp") else "tcp"
            out[f"{container.split('/')[0]}/{proto}"] = [{"HostIp": "0.0.0.0", "HostPort": str(first + len(out))}]
    return out


# States in which the GPU is billed; storage is billed in every state until destroyed.
GPU_BILLED = {"running"}
UNBILLED = {"offline"}  # Vast charges nothing while the host is offline


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
    has_host_packages: bool = True
    layers_off: bool = False  # the layers_off fault
    loading_timer: Optional[threading.Timer] = None
    ssh_port: Optional[int] = None
    # Every process of this container carries it in its environment: a process that made its own
    # session or process group is still inside the container, as on Vast.
    marker: str = field(default_factory=lambda: secrets.token_hex(8))
    runtype: str = "ssh"
    # Interruptible: the $/h bid the GPU is billed at (None: on demand at the offer's dph_base). An outbid
    # instance is stopped, keeps paying storage, and starts again when its bid is the highest again.
    bid: Optional[float] = None
    args: Optional[object] = None  # the args run type's argv (a list, or one string)
    outbid: bool = False
    # What the owner (or the market) wants: `vastai stop` and an outbid set "stopped", a start or a won bid
    # "running". Vast shows it as intended_status and next_state; cur_state follows the container.
    intended: str = "running"
    # Stopped, and another renter took its GPU: it cannot start again (on Vast it waits for a GPU that may
    # never come back).
    machine_lost: bool = False
    ports: dict = field(default_factory=dict)  # "-p H:C" env entries, as Docker's bindings: {"C/tcp": [...]}

    def main_command(self) -> str:
        """What the container runs: the onstart; for the args run type, the entrypoint (sent as onstart by
        the CLI's --entrypoint) with the args, or the args alone as an image without an entrypoint runs them."""
        if self.runtype != "args" or not self.args:
            return self.onstart
        argv = shlex.join(str(a) for a in self.args) if isinstance(self.args, list) else str(self.args)
        return f"{self.onstart} {argv}" if self.onstart else f"exec {argv}"

    @property
    def gpu_dph(self) -> float:
        return float(self.bid if self.bid is not None else self.offer["dph_base"])

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
            if state not in UNBILLED:
                storage_s += seconds
            if state in GPU_BILLED:
                gpu_s += seconds
        gpu = self.gpu_dph * gpu_s / 3600
        storage = self.storage_dph * storage_s / 3600
        return {"gpu_seconds": gpu_s, "storage_seconds": storage_s, "gpu_usd": gpu, "storage_usd": storage, "total_usd": gpu + storage}

    def status_msg(self) -> str:
        if self.machine_lost:
            return "stopped: its GPU was rented by another user; the instance cannot start until it is free again"
        if self.outbid:
            return "outbid: paused until its bid is the highest again"
        if self.status == "offline":
            return "host offline: the machine stopped reporting"
        return f"local instance is {self.status}"

    def row(self) -> dict:
        """The instance as the Vast API shows it."""
        return {
            "id": self.id,
            "actual_status": self.status,
            "intended_status": self.intended,
            "next_state": self.intended,
            "cur_state": "running" if self.status in ("running", "loading", "offline") else "stopped",
            "status_msg": self.status_msg(),
            "is_bid": self.bid is not None,
            "min_bid": self.offer.get("min_bid"),
            "label": self.label,
            "gpu_name": self.offer["gpu_name"],
            "num_gpus": self.offer["num_gpus"],
            "dph_base": self.gpu_dph,
            "dph_total": round(self.gpu_dph + self.storage_dph, 6),
            "storage_cost": self.offer.get("storage_cost", 0.0),
            "storage_total_cost": self.storage_dph,
            "inet_up_cost": 0.0,
            "inet_down_cost": 0.0,
            "disk_space": self.disk,
            "start_date": self.created_at,
            "end_date": self.created_at + self.offer.get("duration", 0),
            "machine_id": self.offer["machine_id"],
            "host_id": self.offer["host_id"],
            # Vast sets both for the ssh run types (SkyPilot waits for ssh_port; `vastai ssh-url` reads them)
            "ssh_host": "127.0.0.1" if self.runtype.startswith("ssh") else None,
            "ssh_port": (self.ssh_port or CLOSED_PORT) if self.runtype.startswith("ssh") else None,
            "ssh_idx": "1",
            "ports": self.ports,
            "public_ipaddr": "127.0.0.1",
            "local_ipaddrs": ["127.0.0.1"],
            "direct_port_start": DIRECT_PORTS[0],
            "direct_port_end": DIRECT_PORTS[1],
            "image_runtype": self.runtype,
            "image_uuid": self.image,
            "gpu_util": 0.0,
            "extra_env": [[k, v] for k, v in self.env.items()],
        }
