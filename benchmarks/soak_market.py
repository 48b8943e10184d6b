"""The interruptible soak (`python benchmarks/soak.py --mix interruptible`): one pipeline launched many times on
bid offers priced as on Vast (min_bid 40-60 % of the on-demand price, billed at the bid) while a market process
outbids running instances at random, lets some rivals go again, takes some stopped machines for good and takes
some hosts offline; and the same pipeline on demand, interleaved in the same run, for the cost comparison.

Interruptible launches carry lifecycle.recover: three in four are followed (the launcher recovers), one in four
detached (one `vast-launch watch` for the whole soak recovers them). Per class it prints: launches, completed, ended
for a stated reason, attempts, preemptions, work lost (steps run twice, against the checkpoint interval),
instances left, processes left, ledger rows wrong, and the billed cost per completed pipeline.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from soak import BIN, Soak

ON_DEMAND = 2.00  # $/h of the GPU on demand
MIN_BIDS = (0.80, 1.00)  # the two offers' min_bid: 40 % and 50 % of on demand
BID = 1.00  # what the interruptible launches bid (50 %), billed at it
STEPS, STEP_S, EVERY = 120, 0.1, 10  # a 12 s training stage, checkpointed every 10 steps (1 s)
STAGE = Path(__file__).with_name("soak_train_stage.py")
COMPLETED = "completed: all stages done"
STATED = ("recovery stopped", "budget reached")  # the reasons an interruptible launch may end without completing


@dataclass
class Run:
    kind: str  # on-demand, followed, detached
    launch_id: str = ""
    rc: int = 0
    out: str = ""
    row: dict = field(default_factory=dict)


class Market(threading.Thread):
    """Every tick, each running bid instance is outbid with probability rate*tick; an outbid instance gets its
    machine back later (30 %), loses it to the other renter for good (25 %), or stays outbid; and any running bid
    instance's host goes offline with probability rate/10*tick."""

    def __init__(self, soak: Soak, rate: float, seed: int, tick: float = 0.5):
        super().__init__(daemon=True)
        self.soak, self.rate, self.tick = soak, rate, tick
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.events: Counter = Counter()
        self.hits: Counter = Counter()  # instance id -> times it was outbid or its host went offline

    def run(self) -> None:
        while not self.stop.wait(self.tick):
            try:
                self._tick()
            except OSError:
                pass  # an instance destroyed between the list and the action

    def _tick(self) -> None:
        for inst in self.soak.instances():
            if inst["actual_status"] != "running" or not inst["is_bid"]:
                continue
            iid, roll = inst["id"], self.rng.random()
            if roll < self.rate / 10 * self.tick:
                self.soak.control("POST", f"/_local/instances/{iid}/host_offline")
                self.events["host offline"] += 1
                self.hits[iid] += 1
            elif roll < self.rate * self.tick:
                self.soak.control("POST", f"/_local/instances/{iid}/outbid", {"winning_bid": BID * 1.5})
                self.events["outbid"] += 1
                self.hits[iid] += 1
                fate = self.rng.random()
                if fate < 0.30:
                    threading.Timer(1.0, self._rival_gone, args=(iid,)).start()
                elif fate < 0.55:
                    self.soak.control("POST", f"/_local/instances/{iid}/take_machine")
                    self.events["machine taken"] += 1

    def _rival_gone(self, iid: int) -> None:
        try:
            self.soak.control("POST", f"/_local/instances/{iid}/rival_gone")
            self.events["bid won again"] += 1
        except OSError:
            pass


def configs(soak: Soak) -> None:
    stages = [
        {"name": "prepare", "command": 'echo prepared > "$VL_OUT/prepared.txt"'},
        {"name": "train", "command": f"python3 soak_train_stage.py {STEPS} {STEP_S} {EVERY}"},
        {"name": "evaluate", "command": 'cat "$VL_OUT/ckpt.json"'},
    ]
    base = {
        "resources": {"gpu_names": [], "max_dph": 10, "min_reliability": 0.9, "disk_gb": 10},
        "code": {"setup": "true"},
        "wandb": {"mode": "offline"},
        "stages": stages,
        "outputs": {**soak.outputs, "final_sync_timeout_s": 30},
    }
    life = {"max_hours": 1, "loading_timeout_minutes": 1, "max_cost_usd": 0.25}
    bid = {
        **base,
        "name": "soak-bid",
        "resources": {**base["resources"], "interruptible": True, "bid_price": BID},
        "lifecycle": {**life, "recover": {"max_attempts": 4, "stopped_minutes": 0.05}},
    }
    (soak.repo / "ondemand.yaml").write_text(yaml.safe_dump({**base, "name": "soak-od", "lifecycle": life}, sort_keys=False))
    (soak.repo / "bid.yaml").write_text(yaml.safe_dump(bid, sort_keys=False))
    shutil.copy(STAGE, soak.repo / STAGE.name)
    for args in (["add", "-A"], ["commit", "-q", "-m", "interruptible soak"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=soak.repo, check=True)


def launch(soak: Soak, kind: str) -> Run:
    config = "ondemand.yaml" if kind == "on-demand" else "bid.yaml"
    args = [str(BIN / "vast-launch"), "--config", config, "--auto-shutdown", "--yes", "--poll-seconds", "0.25"]
    args += ["--detach"] if kind == "detached" else ["--follow"]
    p = subprocess.run(args, cwd=soak.repo, env=soak.env, capture_output=True, text=True, timeout=900)
    run = Run(kind, rc=p.returncode, out=p.stdout + p.stderr)
    found = re.search(r"vast-launch status (\S+?)`", run.out) or re.search(r"W&B group (\S+?);", run.out)
    run.launch_id = found.group(1) if found else ""
    if kind == "detached":  # the watch recovers it; it ends when its last instance reported to the store
        deadline = time.time() + 900
        while time.time() < deadline and not _row(soak, run.launch_id).get("ended_at"):
            time.sleep(1)
    run.row = _row(soak, run.launch_id)
    return run


def _row(soak: Soak, launch_id: str) -> dict:
    if not launch_id:
        return {}
    p = subprocess.run(
        [str(BIN / "vast-launch"), "status", launch_id, "--json"],
        cwd=soak.repo,
        env=soak.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else {}


def judge(run: Run, instances: list[dict], hits: Counter) -> dict:
    mine = [i for i in instances if i["label"].split()[0] == f"vast-launch:{run.launch_id}"]
    steps = 0
    for inst in mine:
        log = Path(inst["workdir"]) / f"vl-{run.launch_id}" / "steps.log"
        steps += len(log.read_text().split()) if log.exists() else 0
    reason = str(run.row.get("end_reason") or "")
    completed = reason.startswith(COMPLETED)
    wrong = []
    if not run.row or not run.row.get("ended_at"):
        wrong.append("the launch never ended")
    elif not completed and not any(s in reason for s in STATED):
        wrong.append(f"ended for no stated reason: {reason!r}")
    if run.kind != "detached" and (run.rc == 0) != completed:
        wrong.append(f"exit {run.rc} but {reason!r}")
    left = [i["id"] for i in mine if i["actual_status"] != "destroyed"]
    if left and run.row.get("ended_at"):
        wrong.append("the ledger says ended, the cloud still has it")
    return {
        "kind": run.kind,
        "launch_id": run.launch_id,
        "completed": completed,
        "attempts": len(mine),
        "preemptions": sum(hits[i["id"]] for i in mine),
        "steps_run": steps,
        "instances_left": len(left),
        "cost": sum(i["charges"]["total_usd"] for i in mine),
        "wrong": wrong,
        "reason": reason,
    }


def run_market_soak(launches: int, on_demand: int, rate: float, parallel: int, store: str, seed: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="vast-launch-market-soak-"))
    soak = Soak(work, store)
    for oid, min_bid in zip((1001, 1002), MIN_BIDS):
        soak.control("POST", f"/_local/offers/{oid}", {"dph_base": ON_DEMAND, "min_bid": min_bid, "storage_cost": 0.15, "slots": 8})
    configs(soak)
    rng = random.Random(seed)
    kinds = ["detached" if rng.random() < 0.25 else "followed" for _ in range(launches)] + ["on-demand"] * on_demand
    rng.shuffle(kinds)
    watch = subprocess.Popen(
        [str(BIN / "vast-launch"), "watch", "--interval", "1"],
        cwd=soak.repo,
        env=soak.env,
        stdout=(work / "watch.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    market = Market(soak, rate, seed)
    market.start()
    t0 = time.time()
    runs: list[Run] = []
    try:
        with ThreadPoolExecutor(parallel) as pool:
            for i, run in enumerate(pool.map(lambda k: launch(soak, k), kinds)):
                runs.append(run)
                print(f"[{time.time() - t0:7.1f}s] {i + 1:>3}/{len(kinds)} {run.kind:<9} {run.launch_id} exit {run.rc}", flush=True)
    finally:
        market.stop.set()
        watch.terminate()
        watch.wait(60)
    time.sleep(2)  # the last instances' own destroys
    instances = soak.instances()
    processes = soak.container_processes()
    results = [judge(r, instances, market.hits) for r in runs]
    soak.close()
    print(f"\nmarket: outbid rate {rate:g}/s of running time per instance; events {dict(market.events)}")
    print(f"prices: on demand ${ON_DEMAND:.2f}/h; interruptible bid ${BID:.2f}/h (offers' min_bid {MIN_BIDS}); storage $0.002/h")
    print(f"pipeline: prepare, train ({STEPS} steps of {STEP_S} s, checkpoint every {EVERY} steps), evaluate")
    head = (
        f"{'class':<10} {'runs':>4} {'done':>4} {'stated':>6} {'attempts':>8} {'preempted':>9} {'steps again':>11} {'max/preempt':>11}"
    )
    print(head + f" {'inst left':>9} {'rows wrong':>10} {'$/completed':>11}")
    per = {}
    for kind in ("on-demand", "followed", "detached"):
        rs = [r for r in results if r["kind"] == kind]
        if not rs:
            continue
        done = [r for r in rs if r["completed"]]
        extra = [r["steps_run"] - STEPS for r in done]
        per_preempt = [(r["steps_run"] - STEPS) / r["preemptions"] for r in done if r["preemptions"]]
        per[kind] = sum(r["cost"] for r in rs) / max(len(done), 1)
        print(
            f"{kind:<10} {len(rs):>4} {len(done):>4} {sum(1 for r in rs if not r['completed'] and not r['wrong']):>6} "
            f"{sum(r['attempts'] for r in rs):>8} {sum(r['preemptions'] for r in rs):>9} {sum(extra):>11} "
            f"{max(per_preempt, default=0):>11.1f} "
            f"{sum(r['instances_left'] for r in rs):>9} {sum(bool(r['wrong']) for r in rs):>10} {per[kind]:>11.5f}"
        )
    bid_rs = [r for r in results if r["kind"] != "on-demand"]
    bid_cost = sum(r["cost"] for r in bid_rs) / max(sum(r["completed"] for r in bid_rs), 1)
    if "on-demand" in per:
        print(
            f"\ncost per completed pipeline: interruptible with recovery ${bid_cost:.5f}, on demand ${per['on-demand']:.5f}: "
            f"{bid_cost / per['on-demand']:.3f}x (same run, same pipeline, same cloud)"
        )
    per_pre = [(r["steps_run"] - STEPS) / r["preemptions"] for r in bid_rs if r["completed"] and r["preemptions"]]
    if per_pre:
        over = sum(1 for x in per_pre if x > EVERY)
        print(
            f"work lost per preemption (steps run twice / times outbid or offline, per completed launch): median "
            f"{statistics.median(per_pre):.1f}, max {max(per_pre):.1f} steps; checkpoint interval {EVERY} steps; "
            f"{over} of {len(per_pre)} launches above one interval"
        )
    print(f"all: {len(results)} launches in {time.time() - t0:.0f} s; processes left {len(processes)}")
    for r in results:
        if r["wrong"]:
            print(f"WRONG {r['kind']} {r['launch_id']}: {'; '.join(r['wrong'])}")
    bad = processes or any(r["wrong"] or r["instances_left"] for r in results)
    if bad:
        print(f"kept for a look: {work} (instances' files under cloud/, the ledger under home/, the watch's log)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0
