"""One launch: check, search, create, wait for `running`, then follow or return.

Every provider call is written to the ledger before and after it happens; every code path
that may have created an instance either records it or destroys it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from .checks import run_checks
from .config import LaunchConfig
from .errors import CheckFailed, UserError
from .gitcheck import archive_url
from .instance_env import instance_env, new_launch_id, offer_deadline, redact
from .interrupts import Interrupted
from .ledger import Ledger
from .offers import RankedOffer, build_query, describe_query, rank_offers
from .onstart import OnstartSpec, assert_no_secrets, render_onstart
from .progress import Heartbeat, LogTail, Printer
from .protocol import (
    ACK_WAIT_SECONDS,
    EXIT_INTERRUPTED,
    LABEL_PREFIX,
    RESULT_LINE,
    RESULT_SEEN,
    WATCHDOG_LINE,
    Outcome,
    parse_stage_line,
)
from .provider import CreateFailed, OfferGone, Provider, ProviderError
from .settle import process_start_time
from .teardown import destroy_and_record, instances_by_label

__all__ = ["Launcher", "LaunchOptions", "LaunchResult", "new_launch_id"]
LOCAL_SETUP = "true"  # local instances run the clone via PYTHONPATH, never pip-installing into the user's env


@dataclass
class LaunchOptions:
    auto_shutdown: Optional[bool] = None  # None: lifecycle.auto_shutdown
    dry_run: bool = False
    follow: Optional[bool] = None  # None: follow in local mode, detach otherwise
    profile: Optional[str] = None
    allow_dirty: bool = False
    wandb_mode: Optional[str] = None
    max_offers: int = 3
    poll_seconds: float = 1.0
    extra_env: dict = field(default_factory=dict)  # e.g. test knobs; never secrets
    runs_dir: Optional[Path] = None
    # On Ctrl-C while following: True to destroy now, False to detach (None: no terminal, destroy).
    ask_destroy: Optional[Callable[[], bool]] = None
    # After the instance reported its result, how long it may take to destroy itself before the launcher does.
    teardown_grace: float = 120.0
    # While following: a progress line when the instance has printed nothing for this long (0: never).
    heartbeat_seconds: float = 30.0


@dataclass
class LaunchResult:
    launch_id: str
    instance_id: Optional[int] = None
    state: str = "planned"
    end_reason: Optional[str] = None
    run_dir: Optional[Path] = None
    dry_run: Optional[dict] = None
    exit_code: int = 0


class Launcher:
    """The launch path for a cloud reached through `Provider` (Vast, or the local cloud over HTTP)."""

    target = "vast"

    def __init__(self, cfg: LaunchConfig, provider: Optional[Provider], ledger: Ledger, opts: LaunchOptions,
                 echo: Callable[[str], None] = print):
        self.cfg, self.provider, self.ledger, self.opts = cfg, provider, ledger, opts
        self.say = Printer(echo)
        self.heartbeat = Heartbeat(opts.heartbeat_seconds)
        self.echo = echo
        self.profile = opts.profile or cfg.train.profile
        if cfg.train.profiles and self.profile not in cfg.train.profiles:
            raise UserError(f"--profile {self.profile}: not one of {sorted(cfg.train.profiles)} (train.profiles)")
        self.wandb_mode = opts.wandb_mode or ("offline" if self.target == "local" else cfg.wandb.mode)
        self.auto_shutdown = cfg.lifecycle.auto_shutdown if opts.auto_shutdown is None else opts.auto_shutdown
        self.will_follow = opts.follow if opts.follow is not None else self.target == "local"

    # --- phases -------------------------------------------------------------------------------
    def check(self):
        self.say("check", "config, git, credentials")
        report = run_checks(self.cfg, self.target, self.opts.allow_dirty, self.wandb_mode,
                            cwd=Path(self.cfg.source or ".").parent, dry_run=self.opts.dry_run)
        for w in report.warnings:
            self.echo(f"WARNING: {w}")
        if not report.ok:
            raise CheckFailed(report.failures)
        return report

    def repo_url(self, report) -> str:
        return report.repo_url

    def setup_command(self) -> str:
        return self.cfg.code.setup

    def run(self) -> LaunchResult:
        report = self.check()
        git = report.git
        repo = self.repo_url(report)
        launch_id = new_launch_id(self.cfg.name)
        group = self.cfg.wandb.group or launch_id
        life = self.cfg.lifecycle
        deadline = int(time.time() + life.max_hours * 3600)
        res = self.cfg.resources
        query, order, offer_type = build_query(res, local=self.target == "local")
        self.say("search", describe_query(query))
        if self.provider is None:  # a dry run without a Vast key: everything but the offer
            ranked = [RankedOffer({"id": None, "dph_total": 0, "note": "no Vast API key: no offer searched"}, 0,
                                  "not searched")]
        else:
            ranked = rank_offers(self.provider.search(query, order, offer_type, res.disk_gb), res)
        if not ranked:
            raise UserError("no offer fits resources: relax gpu_names, max_dph, min_reliability or "
                            "min_duration_hours (see `vast-launch offers`)")
        config_rel = Path(self.cfg.source).resolve().relative_to(git.root.resolve()).as_posix()
        spec = OnstartSpec(
            launch_id=launch_id, commit=git.commit, repo=repo, group=group, deadline=deadline,
            profile=self.profile, config_path=config_rel,
            stages=[(s.name, s.render_command()) for s in self.cfg.stages],
            setup=self.setup_command(), auto_shutdown=self.auto_shutdown,
            idle_seconds=int(life.idle_minutes * 60) if life.idle_minutes else 0,
            archive=archive_url(repo, git.commit, self.cfg.code.archive_url),
        )
        onstart, bootstrap, boot_env = render_onstart(spec)
        if self.opts.dry_run:
            return self._dry_run(launch_id, ranked[0], spec, onstart, bootstrap, boot_env, group)
        if not self.auto_shutdown:
            self.echo("WARNING: auto-shutdown is OFF: when training ends the instance keeps running and "
                      f"billing until its hard deadline ({life.max_hours:g} h)"
                      + (f" or {life.idle_minutes:g} idle minutes" if life.idle_minutes else "")
                      + ". Destroy it with `vast-launch down`.")

        self.ledger.create(
            launch_id, "searching", name=self.cfg.name, config_path=self.cfg.source,
            config_hash=self.cfg.config_hash(), profile=self.profile, commit_sha=git.commit, repo=repo,
            target=self.target, provider_url=self.provider.url,
            wandb_project=self.cfg.wandb.project, wandb_group=group, deadline=deadline,
            label=LABEL_PREFIX + launch_id, num_gpus=res.num_gpus, extra=self._launch_extra(),
        )
        result = LaunchResult(launch_id=launch_id)
        from .cost import estimate

        self.say.cost_so_far = lambda: estimate(self.ledger.get(launch_id), self.ledger.events(launch_id))["cost_usd"]
        try:
            iid, offer = self._rent(launch_id, ranked, spec, onstart, bootstrap, boot_env)
        except KeyboardInterrupt:
            self._clean_up_after_interrupt(launch_id)
            raise
        except Exception as exc:
            if self.ledger.get(launch_id)["state"] not in ("aborted", "failed", "destroyed"):
                self.ledger.finish(launch_id, "failed", f"launch failed: {exc}")
            raise
        result.instance_id = iid
        deadline = int(self.ledger.get(launch_id)["deadline"])
        hours_left = (deadline - time.time()) / 3600
        self.echo(f"instance {iid} running on offer {offer['id']} ({offer.get('gpu_name')}) at "
                  f"${float(offer.get('dph_total') or 0):.3f}/h; W&B group {group}; hard deadline "
                  f"{datetime.fromtimestamp(deadline, timezone.utc):%Y-%m-%d %H:%M UTC} ({hours_left:.1f} h)")
        if not self.will_follow:
            result.state = "running"
            self.echo(f"detached: `vast-launch status {launch_id}` / `vast-launch logs {launch_id} --follow`")
            return result
        return self.follow(launch_id, iid, result)

    def _launch_extra(self) -> dict:
        import socket

        life = self.cfg.lifecycle
        return {"launcher_pid": os.getpid(), "launcher_host": socket.gethostname(),
                "launcher_started": process_start_time(os.getpid()), "auto_shutdown": self.auto_shutdown,
                "reap_grace_minutes": life.reap_grace_minutes, "loading_timeout_minutes": life.loading_timeout_minutes}

    def _instance_env(self, launch_id: str, commit: str, offer: dict, deadline: tuple[int, str]) -> tuple[dict, dict]:
        # --local fetches from a path: the git token stays on this machine
        return instance_env(self.cfg, launch_id, commit, offer, self.wandb_mode, self.opts.extra_env, deadline,
                            send_git_token=self.target != "local")

    def _dry_run(self, launch_id, best: RankedOffer, spec, onstart, bootstrap, boot_env, group) -> LaunchResult:
        deadline = offer_deadline(self.cfg, time.time(), best.offer)
        env, found = self._instance_env(launch_id, spec.commit, best.offer, deadline)
        assert_no_secrets(onstart + bootstrap, found)
        payload = self._payload(launch_id, {**env, **boot_env}, onstart)
        payload["env"] = redact(payload["env"])
        for key in boot_env:  # shown below, unpacked
            payload["env"][key] = "(the bootstrap below, zlib+base64)"
        shown = {"launch_id": launch_id, "offer": best.offer, "why": best.reason, "wandb_group": group,
                 "deadline": deadline[0], "deadline_why": deadline[1], "auto_shutdown": self.auto_shutdown,
                 "create_payload": payload}
        self.echo("DRY RUN: nothing is rented.")
        self.echo(json.dumps(shown, indent=2, default=str))
        self.echo(f"--- onstart ({len(onstart)} of 4000 characters) ---")
        self.echo(onstart)
        self.echo(f"--- bootstrap it unpacks from VL_BOOT_* ({len(bootstrap)} characters) ---")
        self.echo(bootstrap)
        return LaunchResult(launch_id=launch_id, state="dry-run", dry_run=shown)

    def _payload(self, launch_id: str, env: dict, onstart: str) -> dict:
        res = self.cfg.resources
        return {
            "client_id": "me", "image": res.image, "env": env, "disk": res.disk_gb,
            "label": LABEL_PREFIX + launch_id, "onstart": onstart, "runtype": "ssh ssh_proxy",
            "cancel_unavail": True, "price": res.bid_price if res.interruptible else None,
        }

    def _rent(self, launch_id: str, ranked: list[RankedOffer], spec: OnstartSpec, onstart: str, bootstrap: str,
              boot_env: dict):
        skip_machines: set = set()
        tried = 0
        for cand in ranked:
            if tried >= self.opts.max_offers:
                break
            offer = cand.offer
            if offer.get("machine_id") in skip_machines:
                continue
            tried += 1
            deadline = offer_deadline(self.cfg, time.time(), offer)
            env, found = self._instance_env(launch_id, spec.commit, offer, deadline)
            assert_no_secrets(onstart + bootstrap, found)
            if self.will_follow:
                env.setdefault("VL_ACK_WAIT", str(ACK_WAIT_SECONDS))
            storage_dph = float(offer.get("dph_total") or 0) - float(offer.get("dph_base") or 0)
            rates = {"dph_total": offer.get("dph_total"), "dph_base": offer.get("dph_base"),
                     "storage_dph": max(storage_dph, 0.0)}
            self.ledger.event(launch_id, "creating", {"offer_id": cand.id, "why": cand.reason, **rates},
                              offer_id=cand.id, machine_id=offer.get("machine_id"), gpu_name=offer.get("gpu_name"),
                              num_gpus=offer.get("num_gpus"), deadline=deadline[0], **rates)
            self.say("create", f"offer {cand.id} ({offer.get('gpu_name')} x{offer.get('num_gpus')}, "
                               f"${cand.dph:.3f}/h): {cand.reason}")
            try:
                created = self.provider.create(cand.id, self._payload(launch_id, {**env, **boot_env}, onstart))
            except OfferGone:
                self.ledger.event(launch_id, "offer_gone", {"offer_id": cand.id})
                self.say("create", f"offer {cand.id} is gone (rented by someone else); next offer")
                continue
            except CreateFailed as exc:
                if exc.contract_id:
                    self.ledger.event(launch_id, "created", {"error": str(exc), "instance_id": exc.contract_id},
                                      instance_id=exc.contract_id)
                    self.say("create", f"create errored but made instance {exc.contract_id}: destroying it")
                    destroy_and_record(self.provider, self.ledger, launch_id, exc.contract_id,
                                       "create errored; destroyed", final=False)
                else:
                    self.ledger.event(launch_id, "create_failed", {"error": str(exc)})
                    self.say("create", str(exc))
                    # A create that timed out may still have made the instance: find it by its label.
                    for row in instances_by_label(self.provider, launch_id):
                        self.say("create", f"instance {row['id']} exists although create failed: destroying it")
                        destroy_and_record(self.provider, self.ledger, launch_id, int(row["id"]),
                                           "create failed but made an instance; destroyed", final=False)
                continue
            iid = created.instance_id
            self.ledger.event(launch_id, "created", {"offer_id": cand.id, "instance_id": iid}, instance_id=iid)
            if self._wait_running(launch_id, iid):
                return iid, offer
            skip_machines.add(offer.get("machine_id"))
            destroy_and_record(self.provider, self.ledger, launch_id, iid, "did not reach running in time",
                               final=False)
        raise UserError(f"no instance could be started after trying {tried} offer(s): see `vast-launch status {launch_id}`")

    def _clean_up_after_interrupt(self, launch_id: str) -> None:
        """Interrupted before following: every instance this launch may have made is destroyed."""
        row = self.ledger.get(launch_id)
        ids = set(self.ledger.instance_ids(launch_id))
        try:
            ids |= {int(r["id"]) for r in instances_by_label(self.provider, launch_id)}
            for iid in sorted(ids):
                self.say("abort", f"interrupted: destroying instance {iid}")
                destroy_and_record(self.provider, self.ledger, launch_id, iid, "interrupted during launch",
                                   final=False)
        except ProviderError as exc:
            self.echo(f"WARNING: could not destroy after the interrupt: {exc}; run `vast-launch reap`")
            return
        if row["state"] not in ("aborted", "failed", "destroyed"):
            self.ledger.finish(launch_id, "aborted", "interrupted before an instance was running")

    def _wait_running(self, launch_id: str, iid: int) -> bool:
        limit = self.cfg.lifecycle.loading_timeout_minutes * 60
        start = time.time()
        seen, last_asked = None, start
        while time.time() - start < limit:
            asked = time.time()
            row = self.provider.show(iid)
            status = (row or {}).get("actual_status") or "provisioning"
            if status != seen:
                t, within = _bracketed(last_asked, time.time())
                self.ledger.event(launch_id, status if status != "provisioning" else "created",
                                  {"within_s": within}, set_state=True, t=t)
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

    # --- following ----------------------------------------------------------------------------
    def follow(self, launch_id: str, iid: int, result: LaunchResult) -> LaunchResult:
        last_status = "running"
        outcome = Outcome()
        # A change happened somewhere between two polls: its midpoint halves the timeline's error.
        last_asked = time.time()
        gone_at = None
        reported_at = None
        # Vast's logs API takes >= 0.3 s a call: read it beside the status polls, not between them.
        tail = LogTail(self.provider, iid, self.opts.poll_seconds, on_text=self._acknowledger(launch_id, iid))
        self.heartbeat.heard()
        try:
            while True:
                asked = time.time()
                row = self.provider.show(iid)
                if row is None:
                    gone_at, within = _bracketed(last_asked, time.time())
                    self.ledger.event(launch_id, "gone", {"within_s": within}, set_state=False, t=gone_at)
                    break
                status = row.get("actual_status")
                if status != last_status:
                    t, within = _bracketed(last_asked, time.time())
                    self.ledger.event(launch_id, status, {"within_s": within}, t=t)
                    self.say("instance", f"{iid} is {status}")
                    self.heartbeat.heard()
                    last_status = status
                last_asked = asked
                self._print_new_log(launch_id, outcome, tail)
                beat = self.heartbeat.due(status)
                if beat is not None:
                    self.say(*beat)
                if outcome.rc is None:
                    reported_at = None
                elif reported_at is None:
                    reported_at = time.time()
                    if not self.auto_shutdown:
                        return self._leave_running(launch_id, iid, outcome, result)
                if status in ("exited", "unknown", "offline"):
                    self.say("teardown", f"instance {iid} is {status} without tearing down: destroying it")
                    destroy_and_record(self.provider, self.ledger, launch_id, iid,
                                       f"instance {status}; destroyed by the launcher")
                    break
                if reported_at is not None and time.time() - reported_at > self.opts.teardown_grace:
                    self.say("teardown", f"instance {iid} did not destroy itself within "
                                         f"{self.opts.teardown_grace:.0f} s of its result: destroying it")
                    destroy_and_record(self.provider, self.ledger, launch_id, iid,
                                       outcome.end_reason(destroyed_by_self=False)
                                       + f"; it did not destroy itself within {self.opts.teardown_grace:.0f} s, "
                                         "so the launcher did")
                    break
                time.sleep(self.opts.poll_seconds)
        except KeyboardInterrupt as exc:
            tail.stop(wait=0)
            return self._interrupted_while_following(launch_id, iid, result, exc)
        finally:
            tail.stop()
        self._print_new_log(launch_id, outcome, tail)
        outcome.merge(self.final_outcome(launch_id, iid, tail))
        self._keep_recent_log(launch_id, tail)
        row = self.ledger.get(launch_id)
        if row["state"] not in ("destroyed", "aborted"):
            self.ledger.finish(launch_id, "destroyed", outcome.end_reason(), t=gone_at)
        self.after_follow(launch_id, iid)
        row = self.ledger.get(launch_id)
        result.state, result.end_reason = row["state"], row["end_reason"]
        result.exit_code = outcome.exit_code()
        result.run_dir = self.keep_outputs(launch_id, iid)
        self.say("done", f"{result.end_reason}" + (f"; outputs in {result.run_dir}" if result.run_dir else ""))
        return result

    def _leave_running(self, launch_id: str, iid: int, outcome: Outcome, result: LaunchResult) -> LaunchResult:
        """auto-shutdown is off: the stages ended, the instance stays; say so and return."""
        row = self.ledger.get(launch_id)
        self.echo(f"WARNING: stages ended ({outcome.end_reason(destroyed_by_self=False).split(';')[0]}), and "
                  f"auto-shutdown is off: instance {iid} keeps running and billing until "
                  f"{datetime.fromtimestamp(row['deadline'], timezone.utc):%Y-%m-%d %H:%M UTC}. "
                  f"Destroy it with `vast-launch down {launch_id}`.")
        self.ledger.event(launch_id, "stages_ended", {"rc": outcome.rc, "failed_stage": outcome.failed_stage},
                          set_state=False)
        result.state, result.exit_code = "running", outcome.exit_code()
        return result

    def _interrupted_while_following(self, launch_id: str, iid: int, result: LaunchResult,
                                     exc: KeyboardInterrupt) -> LaunchResult:
        """Ctrl-C on a terminal asks; otherwise (no terminal, SIGTERM, SIGHUP) the instance is destroyed."""
        keyboard = not isinstance(exc, Interrupted) or exc.from_keyboard
        if keyboard and self.opts.ask_destroy is not None and not self.opts.ask_destroy():
            self.ledger.event(launch_id, "detached", "interrupted; the user chose to detach", set_state=False)
            self.echo(f"detached: instance {iid} keeps running with its teardown armed (trap, deadline watchdog). "
                      f"Reattach with `vast-launch logs {launch_id} --follow`; destroy with "
                      f"`vast-launch down {launch_id}`.")
            result.state, result.exit_code = "running", EXIT_INTERRUPTED
            return result
        what = "interrupted" if keyboard else f"{exc} received"
        self.say("abort", f"{what}: destroying instance {iid}")
        destroy_and_record(self.provider, self.ledger, launch_id, iid,
                           f"interrupted ({exc or 'SIGINT'}) while following; destroyed by the launcher",
                           state="aborted")
        row = self.ledger.get(launch_id)
        result.state, result.end_reason, result.exit_code = row["state"], row["end_reason"], EXIT_INTERRUPTED
        return result

    def _print_new_log(self, launch_id: str, outcome: Outcome, tail: LogTail) -> None:
        for line in tail.take():
            self._handle_line(launch_id, line, outcome)

    def _keep_recent_log(self, launch_id: str, tail: LogTail) -> None:
        """The instance's logs go with it: keep the last lines, for `vast-launch logs` afterwards."""
        if tail.recent:
            self.ledger.event(launch_id, "log_tail", {"lines": list(tail.recent), "gaps": tail.gaps},
                              set_state=False)

    def _handle_line(self, launch_id: str, line: str, outcome: Outcome) -> None:
        """Echo one instance log line and record what it tells (stage times, result, watchdog)."""
        self.echo(f"  | {line}")
        self.heartbeat.heard()
        watchdog = outcome.watchdog
        if outcome.read_line(line):
            self.say("teardown", f"stages ended (exit {outcome.rc}); "
                     + ("the instance is destroying itself" if self.auto_shutdown else "auto-shutdown is off"))
            self.ledger.event(launch_id, "teardown", {"rc": outcome.rc, "failed_stage": outcome.failed_stage},
                              set_state=False, t=outcome.result_at)
        if outcome.watchdog != watchdog:
            self.ledger.event(launch_id, "watchdog", {"why": outcome.watchdog}, set_state=False)
        ev = parse_stage_line(line)
        if ev is None:
            return
        if ev.phase == "start":
            # A stage starting after a result: the container restarted and the run goes on.
            outcome.rc, outcome.signal, outcome.result_at = None, "", None
            self.ledger.record_stage(launch_id, ev.name, ev.at)
            self.say(f"stage {ev.index}/{ev.total}", ev.name)
            self.heartbeat.stage_started(f"stage {ev.index}/{ev.total}", ev.name)
        else:
            self.heartbeat.stage_ended()
            self.ledger.record_stage(launch_id, ev.name, ev.start or ev.at, ev.at, ev.rc)

    def _acknowledger(self, launch_id: str, iid: int) -> Callable[[str], None]:
        """For the log thread: acknowledge as soon as a result or watchdog line arrives, so the instance
        waits no longer than it takes to fetch its log once (the main loop records it moments later)."""
        sent: set = set()

        def on_text(text: str) -> None:
            for pattern, needed in ((RESULT_LINE, self.auto_shutdown), (WATCHDOG_LINE, True)):
                if needed and pattern.pattern not in sent and pattern.search(text):
                    sent.add(pattern.pattern)
                    try:
                        self.provider.label(iid, LABEL_PREFIX + launch_id + RESULT_SEEN)
                    except ProviderError:
                        pass

        return on_text

    # --- hooks for clouds whose instances' files this machine can read -------------------------
    def final_outcome(self, launch_id: str, iid: int, tail: LogTail) -> Outcome:
        return Outcome()

    def after_follow(self, launch_id: str, iid: int) -> None:
        pass

    def keep_outputs(self, launch_id: str, iid: int) -> Optional[Path]:
        return None


def _bracketed(last_sent: float, answered: float) -> tuple[float, float]:
    """A change seen by a poll happened after the previous poll was sent and before this one was
    answered: its midpoint, and how far from the true moment that can be (`within_s` in the ledger)."""
    return (last_sent + answered) / 2, round((answered - last_sent) / 2, 3)
