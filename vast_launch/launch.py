"""One launch: check, search, create, wait for `running`, then follow or return.

Every provider call is written to the ledger before and after it happens; every code path
that may have created an instance either records it or destroys it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from .checks import run_checks
from .config import LaunchConfig
from .errors import CheckFailed, UserError
from .ledger import Ledger
from .offers import RankedOffer, build_query, describe_query, rank_offers
from .onstart import OnstartSpec, assert_no_secrets, render_onstart
from .provider import CreateFailed, OfferGone, Provider, ProviderError

LABEL_PREFIX = "vast-launch:"
SECRET_ENV = ("WANDB_API_KEY", "VL_GIT_TOKEN")
LOCAL_SETUP = "true"  # local instances run the clone via PYTHONPATH, never pip-installing into the user's env
RESULT_LINE = re.compile(r"\[vast-launch\] .*result rc=(\d+) failed_stage=(\S*)(?: at=([\d.]+))?")
STAGE_LINE = re.compile(r"\[vast-launch\] stage (\d+)/(\d+) (\S+): (start|done|FAILED \(exit (\d+)\)) "
                        r"at=([\d.]+)(?: start=([\d.]+))?")


@dataclass
class LaunchOptions:
    auto_shutdown: bool = False
    local: bool = False
    dry_run: bool = False
    follow: Optional[bool] = None  # None: follow in local mode, detach otherwise
    profile: Optional[str] = None
    allow_dirty: bool = False
    wandb_mode: Optional[str] = None
    max_offers: int = 3
    poll_seconds: float = 1.0
    extra_env: dict = field(default_factory=dict)  # e.g. test knobs; never secrets
    runs_dir: Optional[Path] = None


@dataclass
class LaunchResult:
    launch_id: str
    instance_id: Optional[int] = None
    state: str = "planned"
    end_reason: Optional[str] = None
    run_dir: Optional[Path] = None
    dry_run: Optional[dict] = None


class Printer:
    """Phase lines with elapsed time and, once something is rented, the cost so far:
    `[ 63.2s $0.0123] stage 2/3 diffusion_residual`."""

    def __init__(self, echo: Callable[[str], None], t0: Optional[float] = None):
        self.echo, self.t0 = echo, t0 or time.time()
        self.cost_so_far: Optional[Callable[[], float]] = None

    def __call__(self, phase: str, msg: str) -> None:
        cost = ""
        if self.cost_so_far is not None:
            try:
                cost = f" ${self.cost_so_far():.4f}"
            except Exception:  # a progress line must never break a launch
                cost = ""
        self.echo(f"[{time.time() - self.t0:6.1f}s{cost}] {phase:<9} {msg}")


def new_launch_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "launch"
    return f"{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def redact(env: dict) -> dict:
    return {k: ("***redacted***" if k in SECRET_ENV and v else v) for k, v in env.items()}


def instance_env(cfg: LaunchConfig, launch_id: str, commit: str, offer: dict, wandb_mode: str,
                 extra: dict) -> tuple[dict, dict]:
    """(env for the create call, the secrets in it). Secrets go in env, never in the onstart."""
    env = {
        "VL_LAUNCH_ID": launch_id, "VL_NAME": cfg.name, "VL_COMMIT": commit,
        "VL_OFFER_ID": str(offer.get("id")), "VL_MACHINE_ID": str(offer.get("machine_id")),
        "VL_GPU_NAME": str(offer.get("gpu_name")), "VL_NUM_GPUS": str(offer.get("num_gpus")),
        "VL_DPH_TOTAL": f"{float(offer.get('dph_total') or 0):.4f}",
        "WANDB_PROJECT": cfg.wandb.project, "WANDB_MODE": wandb_mode, "VASTAI_NO_UPDATE_CHECK": "1",
    }
    if cfg.wandb.entity:
        env["WANDB_ENTITY"] = cfg.wandb.entity
    env.update({k: str(v) for k, v in extra.items()})
    found = {}
    if wandb_mode == "online" and os.environ.get("WANDB_API_KEY"):
        found["WANDB_API_KEY"] = os.environ["WANDB_API_KEY"]
    token = os.environ.get("VAST_LAUNCH_GIT_TOKEN")
    if token:
        found["VL_GIT_TOKEN"] = token
    env.update(found)
    return env, found


class Launcher:
    def __init__(self, cfg: LaunchConfig, provider: Optional[Provider], ledger: Ledger, opts: LaunchOptions,
                 echo: Callable[[str], None] = print, target: str = "vast", workdir_of: Optional[Callable] = None):
        self.cfg, self.provider, self.ledger, self.opts = cfg, provider, ledger, opts
        self.say = Printer(echo)
        self.echo = echo
        self.target = target
        # local cloud only: instance id -> its working directory on this machine
        self.workdir_of = workdir_of
        self.profile = opts.profile or cfg.train.profile
        if cfg.train.profiles and self.profile not in cfg.train.profiles:
            raise UserError(f"--profile {self.profile}: not one of {sorted(cfg.train.profiles)} (train.profiles)")
        self.wandb_mode = opts.wandb_mode or ("offline" if opts.local else cfg.wandb.mode)

    # --- phases -------------------------------------------------------------------------------
    def check(self):
        self.say("check", "config, git, credentials")
        report = run_checks(self.cfg, "local" if self.opts.local else "vast", self.opts.allow_dirty,
                            self.wandb_mode, cwd=Path(self.cfg.source or ".").parent)
        for w in report.warnings:
            self.echo(f"WARNING: {w}")
        if not report.ok:
            raise CheckFailed(report.failures)
        return report

    def run(self) -> LaunchResult:
        report = self.check()
        git = report.git
        repo = str(git.root) if self.opts.local else report.repo_url
        launch_id = new_launch_id(self.cfg.name)
        group = self.cfg.wandb.group or launch_id
        deadline = int(time.time() + self.cfg.lifecycle.max_hours * 3600)
        res = self.cfg.resources
        query, order, offer_type = build_query(res, local=self.opts.local)
        self.say("search", describe_query(query))
        ranked = rank_offers(self.provider.search(query, order, offer_type, res.disk_gb), res)
        if not ranked:
            raise UserError("no offer fits resources: relax gpu_names, max_dph, min_reliability or "
                            "min_duration_hours (see `vast-launch offers`)")
        config_rel = Path(self.cfg.source).resolve().relative_to(git.root.resolve()).as_posix()
        spec = OnstartSpec(
            launch_id=launch_id, commit=git.commit, repo=repo, group=group, deadline=deadline,
            profile=self.profile, config_path=config_rel,
            stages=[(s.name, s.render_command()) for s in self.cfg.stages],
            setup=LOCAL_SETUP if self.opts.local else self.cfg.code.setup,
            auto_shutdown=self.opts.auto_shutdown,
        )
        onstart = render_onstart(spec)
        if self.opts.dry_run:
            return self._dry_run(launch_id, ranked[0], spec, onstart, group, deadline)

        self.ledger.create(
            launch_id, "searching", name=self.cfg.name, config_path=self.cfg.source,
            config_hash=self.cfg.config_hash(), profile=self.profile, commit_sha=git.commit, repo=repo,
            target="local" if self.opts.local else "vast", provider_url=self.provider.url,
            wandb_project=self.cfg.wandb.project, wandb_group=group, deadline=deadline,
            label=LABEL_PREFIX + launch_id, num_gpus=res.num_gpus,
        )
        result = LaunchResult(launch_id=launch_id)
        from .cost import estimate

        self.say.cost_so_far = lambda: estimate(self.ledger.get(launch_id), self.ledger.events(launch_id))["cost_usd"]
        try:
            iid, offer = self._rent(launch_id, ranked, spec, onstart)
        except KeyboardInterrupt:
            self.ledger.finish(launch_id, "aborted", "interrupted before an instance was running")
            raise
        except Exception as exc:
            if self.ledger.get(launch_id)["state"] not in ("aborted", "failed", "destroyed"):
                self.ledger.finish(launch_id, "failed", f"launch failed: {exc}")
            raise
        result.instance_id = iid
        hours_left = (deadline - time.time()) / 3600
        self.echo(f"instance {iid} running on offer {offer['id']} ({offer.get('gpu_name')}) at "
                  f"${float(offer.get('dph_total') or 0):.3f}/h; W&B group {group}; hard deadline "
                  f"{datetime.fromtimestamp(deadline, timezone.utc):%Y-%m-%d %H:%M UTC} ({hours_left:.1f} h)")
        follow = self.opts.follow if self.opts.follow is not None else self.opts.local
        if not follow:
            result.state = "running"
            self.echo(f"detached: `vast-launch status {launch_id}` / `vast-launch logs {launch_id}`")
            return result
        return self.follow(launch_id, iid, result)

    def _dry_run(self, launch_id, best: RankedOffer, spec, onstart, group, deadline) -> LaunchResult:
        env, found = instance_env(self.cfg, launch_id, spec.commit, best.offer, self.wandb_mode, self.opts.extra_env)
        assert_no_secrets(onstart, found)
        payload = self._payload(launch_id, env, onstart)
        payload["env"] = redact(payload["env"])
        shown = {"launch_id": launch_id, "offer": best.offer, "why": best.reason, "wandb_group": group,
                 "deadline": deadline, "create_payload": payload}
        self.echo("DRY RUN: nothing is rented.")
        self.echo(json.dumps(shown, indent=2, default=str))
        self.echo("--- onstart (rendered, %d characters) ---" % len(onstart))
        self.echo(onstart)
        return LaunchResult(launch_id=launch_id, state="dry-run", dry_run=shown)

    def _payload(self, launch_id: str, env: dict, onstart: str) -> dict:
        res = self.cfg.resources
        payload = {
            "client_id": "me", "image": res.image, "env": env, "disk": res.disk_gb,
            "label": LABEL_PREFIX + launch_id, "onstart": onstart, "runtype": "ssh ssh_proxy",
            "cancel_unavail": True, "price": res.bid_price if res.interruptible else None,
        }
        return payload

    def _rent(self, launch_id: str, ranked: list[RankedOffer], spec: OnstartSpec, onstart: str):
        skip_machines: set = set()
        tried = 0
        for cand in ranked:
            if tried >= self.opts.max_offers:
                break
            offer = cand.offer
            if offer.get("machine_id") in skip_machines:
                continue
            tried += 1
            env, found = instance_env(self.cfg, launch_id, spec.commit, offer, self.wandb_mode, self.opts.extra_env)
            assert_no_secrets(onstart, found)
            storage_dph = float(offer.get("dph_total") or 0) - float(offer.get("dph_base") or 0)
            rates = {"dph_total": offer.get("dph_total"), "dph_base": offer.get("dph_base"),
                     "storage_dph": max(storage_dph, 0.0)}
            self.ledger.event(launch_id, "creating", {"offer_id": cand.id, "why": cand.reason, **rates},
                              offer_id=cand.id, machine_id=offer.get("machine_id"), gpu_name=offer.get("gpu_name"),
                              num_gpus=offer.get("num_gpus"), **rates)
            self.say("create", f"offer {cand.id} ({offer.get('gpu_name')} x{offer.get('num_gpus')}, "
                               f"${cand.dph:.3f}/h): {cand.reason}")
            try:
                created = self.provider.create(cand.id, self._payload(launch_id, env, onstart))
            except OfferGone:
                self.ledger.event(launch_id, "offer_gone", {"offer_id": cand.id})
                self.say("create", f"offer {cand.id} is gone (rented by someone else); next offer")
                continue
            except CreateFailed as exc:
                if exc.contract_id:
                    self.ledger.event(launch_id, "created", {"error": str(exc), "instance_id": exc.contract_id},
                                      instance_id=exc.contract_id)
                    self.say("create", f"create errored but made instance {exc.contract_id}: destroying it")
                    self._destroy(launch_id, exc.contract_id, "create errored; destroyed", final=False)
                else:
                    self.ledger.event(launch_id, "create_failed", {"error": str(exc)})
                    self.say("create", str(exc))
                continue
            iid = created.instance_id
            self.ledger.event(launch_id, "created", {"offer_id": cand.id, "instance_id": iid}, instance_id=iid)
            try:
                if self._wait_running(launch_id, iid):
                    return iid, offer
            except KeyboardInterrupt:
                self.say("abort", f"interrupted: destroying instance {iid}")
                self._destroy(launch_id, iid, "interrupted during launch", final=True, state="aborted")
                raise
            skip_machines.add(offer.get("machine_id"))
            self._destroy(launch_id, iid, "did not reach running in time", final=False)
        raise UserError(f"no instance could be started after trying {tried} offer(s): see `vast-launch status {launch_id}`")

    def _wait_running(self, launch_id: str, iid: int) -> bool:
        limit = self.cfg.lifecycle.loading_timeout_minutes * 60
        start = time.time()
        seen, last_asked = None, start
        while time.time() - start < limit:
            asked = time.time()
            row = self.provider.show(iid)
            status = (row or {}).get("actual_status") or "provisioning"
            if status != seen:
                self.ledger.event(launch_id, status if status != "provisioning" else "created", set_state=True,
                                  t=(last_asked + asked) / 2)
                self.say("instance", f"{iid} is {status}")
                seen = status
            last_asked = asked
            if status == "running":
                return True
            if status in ("exited", "unknown", "offline") or row is None:
                return False
            time.sleep(min(self.opts.poll_seconds, 0.5))
        self.say("instance", f"{iid} still {seen} after {limit:.0f} s")
        return False

    def _destroy(self, launch_id: str, iid: int, reason: str, final: bool, state: str = "destroyed") -> None:
        self.ledger.event(launch_id, "destroying", reason, set_state=False)
        self.provider.destroy(iid)
        if final:
            self.ledger.finish(launch_id, state, reason)
        else:
            self.ledger.event(launch_id, "gone", {"instance_id": iid, "reason": reason}, set_state=False)

    # --- following ----------------------------------------------------------------------------
    def follow(self, launch_id: str, iid: int, result: LaunchResult) -> LaunchResult:
        seen_lines = 0
        last_status = "running"
        outcome: dict = {}
        # A change happened somewhere between two polls: its midpoint halves the timeline's error.
        last_asked = time.time()
        gone_at = None
        # Vast's logs API takes >= 0.3 s a call: read it beside the status polls, not between them.
        tail = LogTail(self.provider, iid, self.opts.poll_seconds)
        try:
            while True:
                asked = time.time()
                row = self.provider.show(iid)
                if row is None:
                    gone_at = (last_asked + asked) / 2
                    break
                status = row.get("actual_status")
                if status != last_status:
                    self.ledger.event(launch_id, status, t=(last_asked + asked) / 2)
                    self.say("instance", f"{iid} is {status}")
                    last_status = status
                last_asked = asked
                seen_lines = self._print_new_log(launch_id, seen_lines, outcome, tail)
                if status in ("exited", "unknown", "offline"):
                    self.say("teardown", f"instance {iid} is {status} without tearing down: destroying it")
                    self._destroy(launch_id, iid, f"instance {status}; destroyed by the launcher", final=True)
                    break
                time.sleep(self.opts.poll_seconds)
        except KeyboardInterrupt:
            self.say("abort", f"interrupted: destroying instance {iid}")
            self._destroy(launch_id, iid, "interrupted while following; destroyed by the launcher", final=True,
                          state="aborted")
            raise
        finally:
            tail.stop()
        seen_lines = self._print_new_log(launch_id, seen_lines, outcome, tail)
        self._print_final_local_log(launch_id, iid, seen_lines, outcome)
        row = self.ledger.get(launch_id)
        if row["state"] not in ("destroyed", "aborted"):
            reason = self._end_reason(iid, outcome)
            self.ledger.finish(launch_id, "destroyed", reason, t=gone_at)
        self._record_local_stage_times(launch_id, iid)
        self._reconcile_local_bill(launch_id)
        row = self.ledger.get(launch_id)
        result.state, result.end_reason = row["state"], row["end_reason"]
        result.run_dir = self._keep_local_outputs(launch_id, iid)
        self.say("done", f"{result.end_reason}" + (f"; outputs in {result.run_dir}" if result.run_dir else ""))
        return result

    def _record_stage_line(self, launch_id: str, line: str) -> None:
        """Stage wall times as the instance stamped them: cost attribution per stage."""
        m = STAGE_LINE.search(line)
        if m is None:
            return
        name, phase, at = m.group(3), m.group(4), float(m.group(6))
        if phase == "start":
            self.ledger.record_stage(launch_id, name, at)
            self.say(f"stage {m.group(1)}/{m.group(2)}", name)
        else:
            rc = 0 if phase == "done" else int(m.group(5))
            self.ledger.record_stage(launch_id, name, float(m.group(7) or at), at, rc)

    def _print_new_log(self, launch_id: str, seen: int, outcome: dict, tail: "LogTail") -> int:
        lines = tail.latest()
        for line in lines[seen:]:
            self._handle_line(launch_id, line, outcome)
        return max(seen, len(lines))

    def _handle_line(self, launch_id: str, line: str, outcome: dict) -> None:
        """Echo one instance log line and record what it tells (stage times, result, deadline)."""
        if "[vast-launch]" in line and "deadline reached" in line:
            outcome["deadline"] = True
        self.echo(f"  | {line}")
        m = RESULT_LINE.search(line)
        if m:
            outcome["rc"], outcome["failed_stage"] = int(m.group(1)), m.group(2)
            self.say("teardown", f"stages ended (exit {m.group(1)}); the instance is destroying itself")
            self.ledger.event(launch_id, "teardown", {"rc": int(m.group(1))}, set_state=False,
                              t=float(m.group(3)) if m.group(3) else None)
        self._record_stage_line(launch_id, line)

    def _print_final_local_log(self, launch_id: str, iid: int, seen: int, outcome: dict) -> None:
        """The last lines (teardown) are written after the final poll; locally they can still be read."""
        if self.workdir_of is None:
            return
        log = Path(self.workdir_of(iid)) / "onstart.log"
        if log.exists():
            for line in log.read_text(errors="replace").splitlines()[seen:]:
                self._handle_line(launch_id, line, outcome)

    def _record_local_stage_times(self, launch_id: str, iid: int) -> None:
        """Locally the instance's own stage_times file is exact; it replaces what the log showed."""
        if self.workdir_of is None:
            return
        times = Path(self.workdir_of(iid)) / f"vl-{launch_id}" / "stage_times"
        if not times.exists():
            return
        for line in times.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                self.ledger.record_stage(launch_id, parts[0], float(parts[1]), float(parts[2]), int(parts[3]))

    def _reconcile_local_bill(self, launch_id: str) -> None:
        """The local cloud bills at once and disappears with this process: freeze its bill now."""
        if self.target != "local":
            return
        from .cost import reconcile

        try:
            billed = reconcile(self.ledger, [launch_id], self.provider.invoices, settled=lambda r: True)
        except (ProviderError, TimeoutError) as exc:
            self.echo(f"WARNING: could not read the bill: {exc}")
            return
        row = self.ledger.get(launch_id)
        if launch_id in billed:
            self.say("cost", f"estimate ${row['cost_usd']:.4f}, billed ${billed[launch_id]:.4f}")

    def _end_reason(self, iid: int, outcome: dict) -> str:
        workdir = self.workdir_of(iid) if self.workdir_of else None
        if workdir is not None:
            vl = next(iter(Path(workdir).glob("vl-*")), None)
            if vl is not None:
                if (vl / "deadline_hit").exists():
                    outcome = {"deadline": True}
                result = vl / "result"
                if result.exists():
                    kv = dict(p.split("=", 1) for p in result.read_text().split() if "=" in p)
                    outcome = {"rc": int(kv.get("rc", -1)), "failed_stage": kv.get("failed_stage", "")}
        if outcome.get("deadline"):
            return "deadline reached: destroyed by the in-instance watchdog"
        if "rc" not in outcome:
            return "instance gone (destroyed outside this launcher or by its watchdog)"
        if outcome["rc"] == 0:
            return "completed: all stages done; the instance destroyed itself"
        stage = outcome.get("failed_stage") or "setup"
        return f"failed in stage {stage} (exit {outcome['rc']}); the instance destroyed itself"

    def _keep_local_outputs(self, launch_id: str, iid: int) -> Optional[Path]:
        if self.workdir_of is None or self.opts.runs_dir is None:
            return None
        src = Path(self.workdir_of(iid)) / f"vl-{launch_id}"
        if not src.exists():
            return None
        dest = Path(self.opts.runs_dir) / launch_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("repo"), dirs_exist_ok=True)
        return dest


class LogTail:
    """Fetches an instance's log in a background thread; `latest()` is the newest full text's lines."""

    def __init__(self, provider: Provider, iid: int, pause: float):
        self.provider, self.iid, self.pause = provider, iid, pause
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"logs-{iid}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = self.provider.logs(self.iid)
            except (ProviderError, TimeoutError):
                text = None
            if text:
                lines = text.splitlines()
                with self._lock:
                    if len(lines) >= len(self._lines):
                        self._lines = lines
            self._stop.wait(self.pause)

    def latest(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def stop(self, wait: float = 10.0) -> None:
        """Let a request in flight finish, so lines written just before the end are not lost."""
        self._stop.set()
        self._thread.join(wait)
