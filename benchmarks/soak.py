"""Fault soak: N launches against a standalone local cloud (loopback only), with mixed faults.

    python benchmarks/soak.py [--launches 100] [--store s3|file] [--out soak.json]
    python benchmarks/soak.py --mix interruptible [--launches 100] [--outbid-rate 0.05] [--parallel 4]

Each launch is a real `vast-launch` process talking to `vast-launch local-cloud serve` through the
vastai SDK, with its outputs store on a real S3 API server on loopback (moto) or in a directory;
faults are injected in the cloud, signals are real. After each launch the world is checked: instances
left (not destroyed once the case is over), processes of instances left, stages that completed twice,
ledger rows that disagree with the cloud, the exit code or the end reason that happened, and the
seconds the instance was billed after its last stage ended, whether a launcher followed it or not
(detached, SIGKILLed). Two more cases measure the store: the billed seconds after a stage that wrote
100 MB (the final sync's), and a training-like stage's wall time with periodic syncs against the same
stage without a store, interleaved in the same run. Bounded: every launch has a 300 s limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

BIN = Path(sys.executable).parent
EXIT_WATCHDOG, EXIT_INTERRUPTED = 124, 130
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
COMPLETED = "completed: all stages done; the instance destroyed itself"
DEADLINE = "deadline reached (lifecycle.max_hours): destroyed by the in-instance watchdog"
# A training-like stage: CPU work, a 20 MB checkpoint written aside and renamed every 2 s, 12 s in all.
WORK_PY = """import os, time
out = os.environ["VL_OUT"]
t0 = time.time()
n = 0
while time.time() - t0 < 12:
    x = 0
    for i in range(200_000):
        x += i * i
    n += 1
    if n % 10 == 0:
        with open(os.path.join(out, "ckpt.tmp"), "wb") as f:
            f.write(os.urandom(20 << 20))
        os.replace(os.path.join(out, "ckpt.tmp"), os.path.join(out, "ckpt.bin"))
print("work", n)
"""


@dataclass
class Case:
    name: str
    stages: list
    expect_rc: int
    lifecycle: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    args: list = field(default_factory=list)
    during: Optional[Callable] = None  # (soak, proc, launch output so far) once the first stage started
    after: Optional[Callable] = None  # (soak) once the launcher ended
    expect_state: str = "destroyed"
    local: bool = False
    reason: str = COMPLETED  # how the row's end reason starts
    outputs: Optional[dict] = None  # None: the soak's store; {}: none


class Soak:
    def __init__(self, work: Path, store: str = "s3"):
        self.work = work
        self.home = work / "home"
        self.root = work / "cloud"
        self.env = {
            **os.environ,
            "VAST_LAUNCH_HOME": str(self.home),
            "VASTAI_NO_UPDATE_CHECK": "1",
            "XDG_CONFIG_HOME": str(work / "xdg"),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        for var in ("WANDB_API_KEY", "VAST_API_KEY", "VAST_URL"):
            self.env.pop(var, None)
        self.server = subprocess.Popen(
            [str(BIN / "vast-launch"), "local-cloud", "serve", "--root", str(self.root), "--price", "3.6", "--keep-destroyed"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        first = self.server.stdout.readline()
        self.url = first.split()[-1]
        self.key = (self.home / "localcloud_api_key").read_text().strip()
        self.env.update(VAST_URL=self.url, VAST_API_KEY=self.key)
        self.s3 = None
        if store == "s3":
            from s3_server import start_s3_server

            self.s3 = start_s3_server(work / "moto.log")
            self.outputs = {"url": self.s3.bucket("soak") + "/runs", "endpoint_url": self.s3.endpoint, "sync_every_minutes": 0}
            self.env.update(self.s3.env)
        else:
            self.outputs = {"url": (work / "store").as_uri(), "sync_every_minutes": 0}
        self.repo = self._repo()

    def _repo(self) -> Path:
        repo, remote = self.work / "repo", self.work / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        repo.mkdir()
        for args in (
            ["init", "-q", "-b", "main"],
            ["config", "user.email", "soak@localhost"],
            ["config", "user.name", "soak"],
            ["remote", "add", "origin", str(remote)],
        ):
            subprocess.run(["git", *args], cwd=repo, check=True)
        return repo

    def control(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def instances(self) -> list[dict]:
        return self.control("GET", "/_local/instances")["instances"]

    def commit(self, case: Case, i: int) -> None:
        cfg = {
            "name": f"soak-{case.name}",
            "resources": {"gpu_names": [], "max_dph": 10, "min_reliability": 0.9},
            "lifecycle": {"max_hours": 1, "loading_timeout_minutes": 1, **case.lifecycle},
            "code": {"setup": "true"},
            "wandb": {"mode": "offline"},
            "stages": case.stages,
        }
        if case.outputs != {}:  # {}: this case has no store
            cfg["outputs"] = {**self.outputs, "final_sync_timeout_s": 60, **(case.outputs or {})}
        (self.repo / "soak.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (self.repo / "work.py").write_text(WORK_PY)
        subprocess.run(["git", "add", "-A"], cwd=self.repo, check=True)
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", f"soak {i} {case.name}"], cwd=self.repo, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.repo, check=True)

    def launch(self, case: Case) -> tuple[int, str]:
        args = [str(BIN / "vast-launch"), "--config", "soak.yaml", *case.args]
        args += ["--local"] if case.local else ["--auto-shutdown", "--yes", "--poll-seconds", "0.25"]
        args += [] if case.local or "--detach" in case.args else ["--follow"]
        proc = subprocess.Popen(
            args, cwd=self.repo, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        out = []
        deadline = time.time() + 300
        acted = case.during is None
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if not acted and "] stage 1/" in line:
                acted = True
                case.during(self, proc)
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
        return rc, "".join(out)

    def container_processes(self) -> list[int]:
        needle = f"DATA_DIRECTORY={self.root}".encode()
        local = f"DATA_DIRECTORY={self.home / 'local' / 'cloud'}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read()
            except (OSError, IndexError):
                continue
            if needle in env or local in env:
                found.append(int(entry))
        return found

    def status(self) -> list[dict]:
        p = subprocess.run(
            [str(BIN / "vast-launch"), "status", "--json", "--all"],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else []

    def close(self) -> None:
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.server.kill()
        if self.s3 is not None:
            self.s3.stop()


# --- what happens during a launch ------------------------------------------------------------------
def newest(soak: Soak) -> dict:
    return max(soak.instances(), key=lambda r: r["id"])


def send(sig):
    return lambda soak, proc: proc.send_signal(sig)


def sigkill_then_settle(soak: Soak, proc) -> None:
    proc.kill()


def restart(soak: Soak, proc) -> None:
    soak.control("POST", f"/_local/instances/{newest(soak)['id']}/restart")


def group_sigterm(soak: Soak, proc) -> None:
    soak.control("POST", f"/_local/instances/{newest(soak)['id']}/sigterm")


def kill_trap_shell(soak: Soak, proc) -> None:
    os.kill(newest(soak)["pid"], signal.SIGKILL)


SLEEP = [{"name": "a", "command": "sleep 600"}]
SHORT = {"max_hours": 20 / 3600}
MB100 = 'head -c 100000000 /dev/urandom > "$VL_OUT/big.bin"'
WORK = [{"name": "train", "command": "python3 work.py"}]
CASES = [
    Case("clean", [{"name": "a", "command": "echo a"}, {"name": "b", "command": "echo b"}], 0),
    Case(
        "failed-stage",
        [{"name": "a", "command": "echo a"}, {"name": "b", "command": "exit 7"}],
        7,
        reason="failed in stage b (exit 7)",
    ),
    Case("hang-past-deadline", SLEEP, EXIT_WATCHDOG, lifecycle=SHORT, outputs={"final_sync_timeout_s": 5}, reason=DEADLINE),
    Case(
        "429-bursts", [{"name": "a", "command": "echo a"}], 0, faults={"rate_limit": {"/api/v0/instances/": 3, "/api/v0/bundles": 2}}
    ),
    Case("5xx-on-destroy", [{"name": "a", "command": "echo a"}], 0, faults={"destroy_failures": 3, "destroy_failure_status": 503}),
    Case("vanished-offer", [{"name": "a", "command": "echo a"}], 0, faults={"vanish_on_create": [1001]}),
    Case("create-error-creates", [{"name": "a", "command": "echo a"}], 0, faults={"create_error_but_creates": 1}),
    Case("container-restart", [{"name": "a", "command": '[ -f "$VL_W/r" ] && exit 0; touch "$VL_W/r"; sleep 600'}], 0, during=restart),
    Case("launcher-sigkill", [{"name": "a", "command": "sleep 2"}], -9, during=sigkill_then_settle),
    Case("detached", [{"name": "a", "command": "sleep 2"}], 0, args=["--detach"]),
    Case("launcher-sigint", SLEEP, EXIT_INTERRUPTED, during=send(signal.SIGINT), expect_state="aborted", reason="interrupted"),
    Case("launcher-sigterm", SLEEP, EXIT_INTERRUPTED, during=send(signal.SIGTERM), expect_state="aborted", reason="interrupted"),
    Case("launcher-sighup", SLEEP, EXIT_INTERRUPTED, during=send(signal.SIGHUP), expect_state="aborted", reason="interrupted"),
    Case("instance-group-sigterm", SLEEP, 143, during=group_sigterm, reason="terminated (SIGTERM) in stage a (exit 143)"),
    Case(
        "trap-shell-sigkill",
        SLEEP,
        EXIT_WATCHDOG,
        lifecycle=SHORT,
        outputs={"final_sync_timeout_s": 5},
        during=kill_trap_shell,
        reason=DEADLINE,
    ),
    Case(
        "image-without-vastai",
        [{"name": "a", "command": "echo a"}],
        0,
        faults={"no_vastai_cli": True, "destroy_failures": 1, "destroy_failure_status": 429},
    ),
    Case("final-sync-100mb", [{"name": "a", "command": MB100}], 0),
    Case("train-no-store", WORK, 0, outputs={}),
    Case("train-synced", WORK, 0, outputs={"sync_every_minutes": 0.05}),
    Case("local-twice-1", [{"name": "a", "command": "exit 5"}], 5, local=True, reason="failed in stage a (exit 5)"),
    Case("local-twice-2", [{"name": "a", "command": "echo a"}], 0, local=True),
]


def check(soak: Soak, case: Case, rc: int, out: str, known_ids: set) -> dict:
    """The world after one launch."""
    deadline = time.time() + 120
    while True:  # the instance's own teardown may still be under way (a detached or SIGKILLed launcher)
        new = [r for r in soak.instances() if r["id"] not in known_ids]
        if all(r["actual_status"] == "destroyed" for r in new) or time.time() > deadline:
            break
        time.sleep(0.2)
    rows = soak.status()
    row = rows[-1] if rows else {}
    left = [r["id"] for r in new if r["actual_status"] != "destroyed"]
    time.sleep(0.1)
    procs = soak.container_processes()
    dup = 0
    billed_after = None
    for inst in new:
        times = Path(inst["workdir"]) / f"vl-{row.get('launch_id')}" / "stage_times"
        lines = [ln.split() for ln in times.read_text().splitlines()] if times.exists() else []
        done = [ln[0] for ln in lines if ln[-1] == "0"]
        dup += len(done) - len(set(done))
        result = Path(inst["workdir"]) / f"vl-{row.get('launch_id')}" / "result"
        if lines and result.exists() and inst.get("ended_at") and inst["destroyed_by"] == "instance":
            billed_after = inst["ended_at"] - max(float(ln[2]) for ln in lines)  # every case whose stages ended
    wrong = []
    if case.expect_rc != rc:
        wrong.append(f"exit {rc} (expected {case.expect_rc})")
    if row.get("state") != case.expect_state:
        wrong.append(f"ledger state {row.get('state')} (expected {case.expect_state})")
    if not str(row.get("end_reason") or "").startswith(case.reason):
        wrong.append(f"end reason {row.get('end_reason')!r} (expected {case.reason!r}...)")
    if row.get("state") in ("destroyed", "aborted") and left:
        wrong.append("ledger says ended, cloud still runs it")
    work = [int(ln.split()[-1]) for ln in out.splitlines() if ln.strip().startswith("| work ")]
    return {
        "instances_left": len(left),
        "processes_left": len(procs),
        "duplicate_stage_runs": dup,
        "ledger_wrong": wrong,
        "billed_after_last_stage": billed_after,
        "followed": case.local or ("--detach" not in case.args and case.during is not sigkill_then_settle),
        "work_done": work[0] if work else None,
        "new_ids": [r["id"] for r in new],
    }


def _spread(values: list) -> str:
    return f"{statistics.median(values):.2f} / {max(values):.2f}" if values else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launches", type=int, default=100)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all, in turn)")
    ap.add_argument("--out", default=None, help="write every launch's result as JSON here")
    ap.add_argument("--store", choices=["s3", "file"], default="s3", help="the outputs store: moto's S3 server, or a directory")
    ap.add_argument(
        "--mix",
        choices=["faults", "interruptible"],
        default="faults",
        help="faults: the cases above in turn; interruptible: bid offers with random outbids, lost machines and offline hosts",
    )
    ap.add_argument("--on-demand", type=int, default=None, help="--mix interruptible: on-demand launches beside (default: launches/4)")
    ap.add_argument(
        "--outbid-rate", type=float, default=0.05, help="--mix interruptible: outbids per running second of a bid instance"
    )
    ap.add_argument("--parallel", type=int, default=4, help="--mix interruptible: launches at once")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.mix == "interruptible":
        from soak_market import run_market_soak

        on_demand = args.launches // 4 if args.on_demand is None else args.on_demand
        return run_market_soak(args.launches, on_demand, args.outbid_rate, args.parallel, args.store, args.seed)
    cases = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    work = Path(tempfile.mkdtemp(prefix="vast-launch-soak-"))
    soak = Soak(work, args.store)
    results = []
    t0 = time.time()
    try:
        known: set = set()
        for i in range(args.launches):
            case = cases[i % len(cases)]
            soak.commit(case, i)
            if case.faults:
                soak.control("POST", "/_local/faults", case.faults)
            rc, out = soak.launch(case)
            got = check(soak, case, rc, out, known)
            known.update(got.pop("new_ids"))
            soak.control("POST", "/_local/faults", {"destroy_failures": 0, "no_vastai_cli": False})
            soak.control("POST", "/_local/offers/1001", {"rented": False})  # the other renter let it go
            results.append({"case": case.name, "rc": rc, **got})
            mark = "ok" if not (got["ledger_wrong"] or got["instances_left"] or got["processes_left"]) else "WRONG"
            print(
                f"[{time.time() - t0:7.1f}s] {i + 1:>3}/{args.launches} {case.name:<24} exit {rc:>4} {mark} "
                f"{'; '.join(got['ledger_wrong'])}",
                flush=True,
            )
            if mark == "WRONG":
                print("   " + out[-1500:].replace("\n", "\n   "), flush=True)
    finally:
        soak.close()
    print(f"\nstore: {soak.outputs['url']}; billed after the last stage: median / max seconds, instances that destroyed themselves")
    print(f"{'case':<24} {'runs':>4} {'inst left':>9} {'procs left':>10} {'dup stages':>10} {'rows wrong':>10} {'billed after s':>15}")
    for name in dict.fromkeys(r["case"] for r in results):
        rs = [r for r in results if r["case"] == name]
        after = [r["billed_after_last_stage"] for r in rs if r["billed_after_last_stage"] is not None]
        print(
            f"{name:<24} {len(rs):>4} {sum(r['instances_left'] for r in rs):>9} "
            f"{sum(r['processes_left'] for r in rs):>10} {sum(r['duplicate_stage_runs'] for r in rs):>10} "
            f"{sum(bool(r['ledger_wrong']) for r in rs):>10} {_spread(after):>15}"
        )
    big = ("final-sync-100mb",)
    after = lambda rs: [r["billed_after_last_stage"] for r in rs if r["billed_after_last_stage"] is not None]  # noqa: E731
    print(
        f"\nall: {len(results)} launches in {time.time() - t0:.0f} s; instances left "
        f"{sum(r['instances_left'] for r in results)}, processes left {sum(r['processes_left'] for r in results)}, "
        f"duplicate stage runs {sum(r['duplicate_stage_runs'] for r in results)}, ledger rows wrong "
        f"{sum(bool(r['ledger_wrong']) for r in results)}"
    )
    small = [r for r in results if r["case"] not in big]
    for label, rs in (
        ("followed", [r for r in small if r["followed"]]),
        ("nobody following (detached, launcher SIGKILLed)", [r for r in small if not r["followed"]]),
        ("after a 100 MB stage (the final sync)", [r for r in results if r["case"] in big]),
    ):
        print(f"billed after the last stage, {label}: median / max {_spread(after(rs))} s (n={len(after(rs))})")
    synced = [r["work_done"] for r in results if r["case"] == "train-synced" and r["work_done"]]
    plain = [r["work_done"] for r in results if r["case"] == "train-no-store" and r["work_done"]]
    if synced and plain:
        ratios = [a / b for a, b in zip(synced, plain)]
        print(
            f"training work in 12 s with a 20 MB checkpoint synced every 3 s, over the same without a store "
            f"(interleaved pairs, n={len(ratios)}): median {statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    bad = any(r["ledger_wrong"] or r["instances_left"] or r["processes_left"] or r["duplicate_stage_runs"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
