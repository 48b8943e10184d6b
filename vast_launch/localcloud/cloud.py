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

from .containers import kill_container, remove_tmp_files
from .faults import Faults
from .image import container_env
from .instance import Instance
from .offers import default_offers


class Cloud:
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
    ):
        self.root = Path(root)
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
            inst.workdir.mkdir(parents=True, exist_ok=True)
            inst.has_vastai_cli = not self.faults.no_vastai_cli
            inst.has_git = not self.faults.no_git
            inst.has_host_packages = not self.faults.bare_python
            inst.set_state("loading")
            self.instances[iid] = inst
            loading_forever = self.faults.loading_forever
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
            inst.proc = subprocess.Popen(
                ["bash", str(script)],
                cwd=inst.workdir,
                env=container_env(inst, self.public_url, self.bin_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
        remove_tmp_files(inst.workdir)
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
            if inst.status not in ("stopped", "exited") or inst.outbid:  # outbid: it waits for its bid to win
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

    def outbid(self, iid: int, winning_bid: float) -> None:
        """Someone bids `winning_bid` on this machine: an interruptible instance bidding less is stopped
        (its programs killed, its storage still billed) until its bid is the highest again."""
        with self.lock:
            inst = self.instances[iid]
            if inst.bid is None:
                raise ValueError(f"instance {iid} is on demand: only interruptible instances are outbid")
            inst.offer["min_bid"] = winning_bid
            if inst.bid >= winning_bid or inst.status not in ("running", "loading"):
                return
            inst.outbid = True
        self.stop(iid)

    def change_bid(self, iid: int, price: Optional[float]) -> None:
        """`vastai change bid`: no price means a winning one; an outbid instance that now wins starts again."""
        with self.lock:
            inst = self.instances[iid]
            if inst.bid is None:
                raise ValueError(f"instance {iid} is on demand: it has no bid")
            winning = float(inst.offer.get("min_bid") or 0.0)
            inst.bid = float(price) if price is not None else winning
            regains = inst.outbid and inst.bid >= winning
            if regains:
                inst.outbid = False
        if regains:
            self.start(iid)

    def bid_lost_its_rival(self, iid: int) -> None:
        """The higher bid's job finished: the outbid instance is the highest bidder again and starts."""
        with self.lock:
            inst = self.instances[iid]
            inst.offer["min_bid"] = inst.bid
            regains, inst.outbid = inst.outbid, False
        if regains:
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
                    rows.append(
                        {
                            "description": f"Instance {inst.id} {kind} ({inst.offer['gpu_name']})",
                            "quantity": round(seconds / 3600, 8),
                            "rate": rate,
                            "amount": round(amount, 8),
                            "timestamp": inst.ended_at or time.time(),
                            "type": "charge",
                            "instance_id": inst.id,
                            "charge_kind": kind,
                            "seconds": seconds,
                        }
                    )
        return rows

    def charge_rows(self, since: float = 0.0, until: Optional[float] = None) -> list[dict]:
        """Charges as the v1 API shows them: a row per instance with its GPU and storage lines as items."""
        rows: dict[int, dict] = {}
        for line in self.invoice_rows(since, until):
            inst = self.instances[line["instance_id"]]
            end = inst.ended_at or time.time()
            row = rows.setdefault(
                inst.id,
                {
                    "type": "instance",
                    "source": f"instance-{inst.id}",
                    "start": inst.created_at,
                    "end": end,
                    "amount": 0.0,
                    "description": f"Instance {inst.id} ({inst.offer['gpu_name']})",
                    "metadata": {"instance_id": inst.id},
                    "items": [],
                },
            )
            row["amount"] = round(row["amount"] + line["amount"], 8)
            row["items"].append(
                {
                    "type": line["charge_kind"],
                    "source": None,
                    "start": inst.created_at,
                    "end": end,
                    "amount": line["amount"],
                    "description": line["description"],
                    "metadata": {"quantity_hours": line["quantity"], "rate": line["rate"]},
                    "items": [],
                }
            )
        return list(rows.values())

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
                    pid=inst.proc.pid if inst.proc else None,
                )
                out.append(row)
            return out
