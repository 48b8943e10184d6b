"""The instance's teardown agent: one process, started before the stages, that owns the outputs store's
syncs and the one teardown every layer ends in: result.json, the bounded final sync, destroy and confirm.

    python3 -E -S -m vast_launch.vast.shell.agent serve WORKDIR         # reads .vl/agent.fifo
    python3 -E -S -m vast_launch.vast.shell.agent finish WORKDIR WHY [force]
    python3 -E -S -m vast_launch.vast.shell.agent destroy WORKDIR
    python3 -E -S -m vast_launch.vast.shell.agent gone WORKDIR           # exit 0: the instance is gone

`serve` takes one command a line: `sync` (push what changed; it also syncs every sync_every_minutes by
itself), `result` (the stages ended: if a launcher follows and there is no store, wait for its
acknowledgement) and `go WHY [force]` (the teardown; WHY is `done` or the watchdog's deadline, budget or
idle; force destroys even with auto-shutdown off). Started before the stages, so that the teardown pays
no interpreter start-up. `finish` is the same teardown in a new process, for when the agent is gone;
`destroy` only destroys and confirms (the hard deadline came while another teardown was still syncing),
and `gone` only confirms (after the vastai CLI's destroy, which exits 0 on HTTP errors too). A teardown
leaves its status in `.vl/teardown.rc` for a layer that cannot `wait` for this process.

Runs with the instance's own Python: the standard library, `protocol`, and the store's `objects`. Reads
the instance's key and the store's credentials from `.vl/secrets/`, never from its environment.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

from vast_launch import protocol
from vast_launch.store import objects

DESTROY_MARGIN_S = 5.0  # the final sync stops this long before the hard deadline: time to destroy


def log(msg: str) -> None:
    print(f"[vast-launch] {time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)


class Instance:
    """This instance as the Vast API sees it, through its own key (CONTAINER_API_KEY)."""

    def __init__(self, helpers: Path):
        base = (os.environ.get("VAST_URL") or "https://console.vast.ai").rstrip("/")
        self.url = f"{base}/api/v0/instances/{os.environ.get('CONTAINER_ID', '')}/?owner=me"
        try:
            key = (helpers / "secrets" / "CONTAINER_API_KEY").read_text().strip()
        except OSError:
            key = ""
        self.headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}

    def call(self, method: str) -> dict:
        data = b"{}" if method == "DELETE" else None
        try:
            req = urllib.request.Request(self.url, method=method, data=data, headers=self.headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                body = json.load(r)
                return body if isinstance(body, dict) else {}
        except Exception as exc:  # any failure is one more try; its HTTP code decides
            return {"code": getattr(exc, "code", 0) or -1}

    def gone(self) -> bool:
        """Confirmed by asking again: Vast may acknowledge a DELETE it then loses."""
        for _ in range(12):
            body = self.call("GET")
            if body.get("instances", 1) is None or body.get("code") in (401, 403, 404):
                return True
            time.sleep(0.25)
        return False

    def destroy(self, tries: int = 8) -> bool:
        for i in range(tries):
            if self.call("DELETE").get("code", 0) in (0, 404) and self.gone():
                return True
            time.sleep(min(0.3 * 2**i, 6.0))
        return False

    def wait_for_acknowledgement(self, seconds: float) -> None:
        """While the label says a launcher follows, wait (at most `seconds`) until it saw the result; the log
        says which ended the wait."""
        if seconds <= 0:
            return
        t0 = time.time()
        while time.time() < t0 + seconds:
            label = protocol.parse_label(str((self.call("GET").get("instances") or {}).get("label") or ""))
            if label is not None and label.result_seen:
                log(f"its launcher saw the result ({time.time() - t0:.1f} s)")
                return
            if label is None or (label.followed_until or 0) < time.time():
                return  # nobody follows: no one to wait for
            time.sleep(0.05)
        log(f"no acknowledgement from its launcher within {seconds:g} s")


class Agent:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.helpers = self.workdir / protocol.HELPERS_DIR
        self.launch = json.loads((self.helpers / "launch.json").read_text())
        self.run = json.loads((self.helpers / "run.json").read_text())  # this attempt: deadline, attempt
        self.instance = Instance(self.helpers)
        self.syncer: Optional[objects.Syncer] = None
        try:
            store = objects.instance_store(self.workdir)
        except objects.StoreError as exc:
            log(f"outputs store: {exc}")
            store = None
        if store is not None:
            self.syncer = objects.Syncer(store, self.launch["launch_id"], self.workdir)
        self._sync_lock = threading.Lock()
        self._stop_syncs = threading.Event()
        self._ack: Optional[threading.Thread] = None

    def acknowledgement(self) -> threading.Thread:
        """Without a store, a following launcher must see the result or watchdog line before the instance (and
        its log) is gone: wait for its acknowledgement, once, in the background (finish joins it)."""
        if self._ack is None:
            wait = float(self.launch.get("ack_wait_s") or 0) if self.syncer is None else 0.0
            self._ack = threading.Thread(target=self.instance.wait_for_acknowledgement, args=(wait,), daemon=True)
            self._ack.start()
        return self._ack

    # --- syncs while the stages run ----------------------------------------------------------
    def sync(self) -> None:
        if self.syncer is None or not self._sync_lock.acquire(blocking=False):
            return  # one at a time: the running one sends what changed meanwhile next time
        try:
            files, sent, _ = self.syncer.push(stop=self._stop_syncs.is_set)
            if files:
                log(f"synced {files} file(s), {sent / 1e6:.1f} MB to {self.syncer.store.url}")
        except (objects.StoreError, OSError) as exc:
            log(f"sync failed (next time again): {exc}")
        finally:
            self._sync_lock.release()

    # --- the one teardown --------------------------------------------------------------------
    def finish(self, why: str, force: bool) -> bool:
        """result.json, the bounded final sync, then destroy and confirm. True when done as asked."""
        deadline = float(self.run["deadline"])
        until = min(time.time() + float(self.launch["final_sync_timeout_s"]), deadline - DESTROY_MARGIN_S)
        ident = {**self.launch, "attempt": self.run.get("attempt"), "instance_id": os.environ.get("CONTAINER_ID")}
        doc = protocol.result_document(self.workdir, why, ident, outputs="syncing" if self.syncer else "none")
        (self.workdir / protocol.STORE_RESULT).write_text(json.dumps(doc, indent=1))
        if self.syncer is not None:
            self._final_sync(doc, until)
        if not (self.launch["auto_shutdown"] or force):
            log("auto-shutdown off: the instance is left running until its deadline or idle limit")
            return True
        self.acknowledgement().join()  # bounded by ack_wait_s; 0 with a store
        log(f"destroying instance {os.environ.get('CONTAINER_ID')}")
        return self.instance.destroy()

    def _final_sync(self, doc: dict, until: float) -> None:
        self._stop_syncs.set()
        self._sync_lock.acquire(timeout=max(0.0, min(10.0, until - time.time())))  # a periodic sync ends between files
        t0 = time.time()
        try:
            self.syncer.put_result(doc)
            files, sent, whole = self.syncer.push(until=until)
            doc["outputs"] = "complete" if whole else "partial"
            log(f"final sync: {files} file(s), {sent / 1e6:.1f} MB in {time.time() - t0:.1f} s" + ("" if whole else ", out of time"))
            self.syncer.push(until=until)  # the log, with the line above
            self.syncer.put_result(doc)
        except (objects.StoreError, OSError) as exc:
            log(f"final sync failed: {exc}")

    # --- serving the bootstrap ---------------------------------------------------------------
    def serve(self) -> int:
        fd = os.open(self.helpers / "agent.fifo", os.O_RDWR)  # read-write: never an EOF when writers close
        every = float(self.launch.get("sync_every_s") or 0)
        next_sync = time.time() + every if every and self.syncer else None
        pending = b""
        while True:
            wait = None if next_sync is None else max(0.0, next_sync - time.time())
            if not select.select([fd], [], [], wait)[0]:
                threading.Thread(target=self.sync, daemon=True).start()
                next_sync = time.time() + every
                continue
            pending += os.read(fd, 4096)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                if words[:1] == ["sync"]:
                    threading.Thread(target=self.sync, daemon=True).start()
                elif words[:1] == ["result"]:
                    self.acknowledgement()
                elif words[:1] == ["go"] and len(words) >= 2:
                    return 0 if self.finish(words[1], "force" in words[2:]) else 1


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("serve", "finish", "destroy", "gone"):
        print(__doc__, file=sys.stderr)
        return 2
    workdir = Path(argv[1])
    if argv[0] in ("destroy", "gone"):
        instance = Instance(workdir / protocol.HELPERS_DIR)
        return 0 if (instance.destroy() if argv[0] == "destroy" else instance.gone()) else 1
    agent = Agent(workdir)
    if argv[0] == "serve":
        rc = agent.serve()
    else:
        rc = 0 if agent.finish(argv[2] if len(argv) > 2 else "done", "force" in argv[3:]) else 1
    (workdir / protocol.HELPERS_DIR / "teardown.rc").write_text(f"{rc}\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
