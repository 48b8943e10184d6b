"""One launch: check, search, create, wait for `running`, then follow or return.

Every provider call is written to the ledger before and after it happens; every code path
that may have created an instance either records it or destroys it.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from ..billing import estimate
from ..checks import run_checks
from ..config import LaunchConfig
from ..errors import CheckFailed, UserError
from ..gitcheck import archive_url
from ..launcher_process import process_start_time
from ..ledger import Ledger
from ..protocol import ACK_WAIT_SECONDS, EXIT_NO_RESULT, FOLLOW_RENEW_SECONDS, label_for, new_launch_id
from ..states import ENDED_WITHOUT_TEARDOWN, RUNNING, TERMINAL
from ..store import StoreSpec
from ..targets.base import LaunchResult
from .attempts import attempt_of, stop_reason
from .creating import Creating
from .following import Following, bracketed
from .instance_env import offer_deadline
from .offers import RankedOffer, billed_rates, build_query, describe_query, rank_offers
from .onstart import OnstartSpec, assert_no_secrets, render_onstart
from .options import Attempt, LaunchOptions
from .progress import Heartbeat, Printer
from .provider import CreateFailed, OfferGone, Provider, ProviderError
from .teardown import destroy_and_record, instances_by_label


class Launcher(Following, Creating):
    """The launch path for a cloud reached through `Provider` (Vast, or the local cloud over HTTP).

    `target` is the Target whose launch this is (the ledger records its name; its checks run first)."""

    target_name = "vast"
    rents_this_machine = False  # the local cloud: GPU and region filters do not apply

    def __init__(
        self, cfg: LaunchConfig, provider: Optional[Provider], ledger: Ledger, opts: LaunchOptions, echo: Callable[[str], None] = print
    ):
        from ..targets import get

        self.target = get(self.target_name)
        self.cfg, self.provider, self.ledger, self.opts = cfg, provider, ledger, opts
        self.say = Printer(echo)
        self.heartbeat = Heartbeat(opts.heartbeat_seconds)
        self.echo = echo
        self.profile = cfg.choose_profile(opts.profile)
        self.wandb_mode = opts.wandb_mode or self.target.default_wandb_mode or cfg.wandb.mode
        self.auto_shutdown = cfg.lifecycle.auto_shutdown if opts.auto_shutdown is None else opts.auto_shutdown
        self.will_follow = opts.follow if opts.follow is not None else self.target.follows_by_default
        self.store = self.store_spec()

    def store_spec(self) -> Optional[StoreSpec]:
        """Where this launch's outputs outlive its instance (outputs.url), or None."""
        out = self.cfg.outputs
        return StoreSpec(out.url, out.endpoint_url, out.region or os.environ.get("AWS_REGION")) if out.url else None

    # --- phases -------------------------------------------------------------------------------
    def check(self):
        self.say("check", "config, git, credentials")
        report = run_checks(
            self.cfg,
            self.target,
            self.opts.allow_dirty,
            self.wandb_mode,
            cwd=Path(self.cfg.source or ".").parent,
            dry_run=self.opts.dry_run,
        )
        for w in report.warnings:
            self.echo(f"WARNING: {w}")
        if not report.ok:
            raise CheckFailed(report.failures)
        return report

    def repo_url(self, report) -> str:
        return report.repo_url

    def run(self) -> LaunchResult:
        report = self.check()
        git = report.git
        config_rel = Path(self.cfg.source).resolve().relative_to(git.root.resolve()).as_posix()
        launch_id = new_launch_id(self.cfg.name)
        return self._launch(Attempt(launch_id, git.commit, self.repo_url(report), config_rel, self.cfg.wandb.group or launch_id))

    def resume(self, row: dict) -> LaunchResult:
        """Another instance for an existing launch: the same id, commit, W&B group and outputs prefix; its
        stages resume from what the outputs store holds (finished stages skipped, a stage from its checkpoint)."""
        from ..checks import resume_problems

        failures = resume_problems(self.cfg, row, self.target, self.wandb_mode)
        if failures:
            raise CheckFailed(failures)
        extra = row["extra"] if isinstance(row.get("extra"), dict) else {}
        attempt = int(extra.get("attempt") or 1) + 1
        config_rel = extra.get("config_rel") or Path(row["config_path"]).as_posix()
        self.profile = row.get("profile") or self.profile
        spent = estimate(row, self.ledger.events(row["id"]))["cost_usd"]
        at = Attempt(row["id"], row["commit_sha"], row["repo"], config_rel, row["wandb_group"], attempt, spent)
        return self._launch(at)

    def recovery(self):
        return self.cfg.lifecycle.recover if self.store is not None else None

    def recover(self, launch_id: str, result: LaunchResult, why: str) -> LaunchResult:
        """The instance is gone (destroyed by the follower, or lost) without a result: the launch goes on
        with another instance, from its outputs store, while attempts and budget last."""
        rec, life = self.cfg.lifecycle.recover, self.cfg.lifecycle
        row = self.ledger.get(launch_id)
        attempt = attempt_of(row)
        stop = stop_reason(row, self.ledger.events(launch_id), rec.max_attempts, life.max_cost_usd)
        if stop is not None:
            self.ledger.update(launch_id, end_reason=f"{row['end_reason']}; {stop}")
            self.say("done", f"{row['end_reason']}; {stop}")
            result.state, result.end_reason = row["state"], f"{row['end_reason']}; {stop}"
            result.exit_code = EXIT_NO_RESULT
            return result
        self.say("recover", f"{why}: attempt {attempt + 1}/{rec.max_attempts} on another offer, from the outputs store")
        self.ledger.event(launch_id, "recovering", {"why": why, "attempt": attempt + 1}, set_state=False)
        self.opts.confirm = None  # the launch was confirmed once: its recovery does not wait for an answer
        return self.resume(self.ledger.get(launch_id))

    def _launch(self, at: Attempt) -> LaunchResult:
        result = self._rent_and_follow(at)
        row = self.ledger.get(at.launch_id) if result.state != "dry-run" else None
        if row is not None and row["state"] not in TERMINAL:  # detached, or auto-shutdown off: nobody follows now
            extra = row["extra"] if isinstance(row.get("extra"), dict) else {}
            self.ledger.update(at.launch_id, extra={**extra, "launcher_left": time.time()})
        return result

    def _rent_and_follow(self, at: Attempt) -> LaunchResult:
        life = self.cfg.lifecycle
        deadline = int(time.time() + life.max_hours * 3600)
        res = self.cfg.resources
        query, order, offer_type = build_query(res, local=self.rents_this_machine)
        self.say("search", describe_query(query))
        if self.provider is None:  # a dry run without a Vast key: everything but the offer
            ranked = [RankedOffer({"id": None, "dph_total": 0, "note": "no Vast API key: no offer searched"}, 0, "not searched")]
        else:
            ranked = rank_offers(self.provider.search(query, order, offer_type, res.disk_gb), res)
        if not ranked:
            raise UserError(
                "no offer fits resources: relax gpu_names, max_dph, min_reliability or min_duration_hours (see `vast-launch offers`)"
            )
        spec = OnstartSpec(
            launch_id=at.launch_id,
            commit=at.commit,
            repo=at.repo,
            group=at.group,
            deadline=deadline,
            profile=self.profile,
            config_path=at.config_rel,
            stages=[(s.name, s.render_command()) for s in self.cfg.stages],
            setup=self.cfg.code.setup,
            auto_shutdown=self.auto_shutdown,
            idle_seconds=int(life.idle_minutes * 60) if life.idle_minutes else 0,
            archive=archive_url(at.repo, at.commit, self.cfg.code.archive_url),
            store=self.store.as_dict() if self.store else {},
            final_sync_seconds=min(self.cfg.outputs.final_sync_timeout_s, int(life.max_hours * 3600 / 2)),
            sync_every_seconds=self.cfg.outputs.sync_every_minutes * 60,
            ack_wait_seconds=ACK_WAIT_SECONDS,
        )
        onstart, bootstrap, boot_env = render_onstart(spec)
        if self.opts.dry_run:
            return self._dry_run(at, ranked[0], spec, onstart, bootstrap, boot_env)
        if not self.auto_shutdown:
            self.echo(
                "WARNING: auto-shutdown is OFF: when training ends the instance keeps running and "
                f"billing until its hard deadline ({life.max_hours:g} h)"
                + (f" or {life.idle_minutes:g} idle minutes" if life.idle_minutes else "")
                + ". Destroy it with `vast-launch down`."
            )
        if self.opts.confirm is not None and not self.opts.confirm(self._offer_summary(ranked[0], deadline)):
            raise UserError("nothing rented: not confirmed")
        self._open_row(at, deadline)
        result = LaunchResult(launch_id=at.launch_id)
        self.say.cost_so_far = lambda: estimate(self.ledger.get(at.launch_id), self.ledger.events(at.launch_id))["cost_usd"]
        try:
            iid, offer = self._rent(at, ranked, spec, onstart, bootstrap, boot_env)
        except KeyboardInterrupt:
            self._clean_up_after_interrupt(at.launch_id)
            raise
        except Exception as exc:
            if self.ledger.get(at.launch_id)["state"] not in TERMINAL:
                self.ledger.finish(at.launch_id, "failed", f"launch failed: {exc}")
            raise
        result.instance_id = iid
        deadline = int(self.ledger.get(at.launch_id)["deadline"])
        hours_left = (deadline - time.time()) / 3600
        self.echo(
            f"instance {iid} running on offer {offer['id']} ({offer.get('gpu_name')}) at "
            f"${float(offer.get('dph_total') or 0):.3f}/h; W&B group {at.group}; hard deadline "
            f"{datetime.fromtimestamp(deadline, timezone.utc):%Y-%m-%d %H:%M UTC} ({hours_left:.1f} h)"
            + (f"; outputs to {self.store.url.rstrip('/')}/{at.launch_id}/" if self.store else "")
        )
        if not self.will_follow:
            result.state = "running"
            self.echo(f"detached: `vast-launch status {at.launch_id}` / `vast-launch logs {at.launch_id} --follow`")
            return result
        return self.follow(at.launch_id, iid, result)

    def _open_row(self, at: Attempt, deadline: int) -> None:
        """The ledger row before anything is rented: a new launch, or the next attempt of one."""
        if at.attempt > 1:
            self.ledger.reopen(at.launch_id, {"attempt": at.attempt})
            row = self.ledger.get(at.launch_id)
            extra = {**(row.get("extra") if isinstance(row.get("extra"), dict) else {}), **self._launch_extra(at)}
            self.ledger.update(at.launch_id, deadline=deadline, extra=extra, provider_url=self.provider.url)
            return
        self.ledger.create(
            at.launch_id,
            "searching",
            name=self.cfg.name,
            config_path=self.cfg.source,
            config_hash=self.cfg.config_hash(),
            profile=self.profile,
            commit_sha=at.commit,
            repo=at.repo,
            target=self.target_name,
            provider_url=self.provider.url,
            wandb_project=self.cfg.wandb.project,
            wandb_group=at.group,
            deadline=deadline,
            label=label_for(at.launch_id, self.ledger.workspace()),
            num_gpus=self.cfg.resources.num_gpus,
            extra=self._launch_extra(at),
        )

    def _launch_extra(self, at: Attempt) -> dict:
        import socket

        life = self.cfg.lifecycle
        return {
            "launcher_pid": os.getpid(),
            "launcher_host": socket.gethostname(),
            "launcher_started": process_start_time(os.getpid()),
            "launcher_left": None,  # set when it returns while the launch goes on (a resume follows anew)
            "auto_shutdown": self.auto_shutdown,
            "reap_grace_minutes": life.reap_grace_minutes,
            "loading_timeout_minutes": life.loading_timeout_minutes,
            "attempt": at.attempt,
            "max_attempts": life.recover.max_attempts if life.recover is not None and self.store is not None else None,
            "recover_stopped_minutes": life.recover.stopped_minutes if life.recover is not None else None,
            "max_cost_usd": life.max_cost_usd,
            # what a supervisor needs to rent the next attempt as this launcher would have
            "wandb_mode": self.wandb_mode,
            "extra_env": dict(self.opts.extra_env or {}),
            "config_rel": at.config_rel,
            **({"store": self.store.as_dict()} if self.store else {}),
        }

    def _rent(self, at: Attempt, ranked: list[RankedOffer], spec: OnstartSpec, onstart: str, bootstrap: str, boot_env: dict):
        launch_id = at.launch_id
        skip_machines: set = set()
        tried = 0
        for cand in ranked:
            if tried >= self.opts.max_offers:
                break
            rates = billed_rates(cand.offer, self.cfg.resources)
            offer = {**cand.offer, "dph_total": rates["dph_total"], "dph_base": rates["dph_base"]}  # as it will bill
            if offer.get("machine_id") in skip_machines:
                continue
            tried += 1
            deadline = offer_deadline(self.cfg, time.time(), offer, at.spent_usd)
            env, found = self._instance_env(at, offer, deadline)
            assert_no_secrets(onstart + bootstrap, found)
            self.ledger.event(
                launch_id,
                "creating",
                {"offer_id": cand.id, "why": cand.reason, **rates},
                offer_id=cand.id,
                machine_id=offer.get("machine_id"),
                gpu_name=offer.get("gpu_name"),
                num_gpus=offer.get("num_gpus"),
                deadline=deadline[0],
                label=self._label_text(at, deadline[0]),
                **rates,
            )
            self.say(
                "create",
                f"offer {cand.id} ({offer.get('gpu_name')} x{offer.get('num_gpus')}, ${rates['dph_total']:.3f}/h"
                + (" bid" if self.cfg.resources.interruptible else "")
                + f"): {cand.reason}",
            )
            try:
                created = self.provider.create(cand.id, self._payload(self._label_text(at, deadline[0]), {**env, **boot_env}, onstart))
            except OfferGone:
                self.ledger.event(launch_id, "offer_gone", {"offer_id": cand.id})
                self.say("create", f"offer {cand.id} is gone (rented by someone else); next offer")
                continue
            except CreateFailed as exc:
                if exc.contract_id:
                    self.ledger.event(
                        launch_id, "created", {"error": str(exc), "instance_id": exc.contract_id}, instance_id=exc.contract_id
                    )
                    self.say("create", f"create errored but made instance {exc.contract_id}: destroying it")
                    destroy_and_record(
                        self.provider, self.ledger, launch_id, exc.contract_id, "create errored; destroyed", final=False
                    )
                else:
                    self.ledger.event(launch_id, "create_failed", {"error": str(exc)})
                    self.say("create", str(exc))
                    # A create that timed out may still have made the instance: find it by its label.
                    for row in instances_by_label(self.provider, launch_id):
                        self.say("create", f"instance {row['id']} exists although create failed: destroying it")
                        destroy_and_record(
                            self.provider,
                            self.ledger,
                            launch_id,
                            row.id,
                            "create failed but made an instance; destroyed",
                            final=False,
                        )
                continue
            iid = created.instance_id
            self.ledger.event(launch_id, "created", {"offer_id": cand.id, "instance_id": iid}, instance_id=iid)
            if self._wait_running(launch_id, iid, lambda: self._say_following(launch_id, iid, self.will_follow)):
                if not self._downed(launch_id):
                    return iid, offer
            if self._downed(launch_id):
                break
            skip_machines.add(offer.get("machine_id"))
            destroy_and_record(self.provider, self.ledger, launch_id, iid, "did not reach running in time", final=False)
        if self._downed(launch_id):
            why = self.ledger.get(launch_id)["end_reason"]
            raise UserError(f"{launch_id} was ended while its instance was loading ({why}): nothing more is rented")
        raise UserError(f"no instance could be started after trying {tried} offer(s): see `vast-launch status {launch_id}`")

    def _downed(self, launch_id: str) -> bool:
        """Someone ended this launch (`vast-launch down`) while it was renting: it must not rent again."""
        return self.ledger.get(launch_id)["state"] in TERMINAL

    def _clean_up_after_interrupt(self, launch_id: str) -> None:
        """Interrupted before following: every instance this launch may have made is destroyed."""
        row = self.ledger.get(launch_id)
        ids = set(self.ledger.instance_ids(launch_id))
        try:
            ids |= {i.id for i in instances_by_label(self.provider, launch_id)}
            for iid in sorted(ids):
                self.say("abort", f"interrupted: destroying instance {iid}")
                destroy_and_record(self.provider, self.ledger, launch_id, iid, "interrupted during launch", final=False)
        except ProviderError as exc:
            self.echo(f"WARNING: could not destroy after the interrupt: {exc}; run `vast-launch reap`")
            return
        if row["state"] not in TERMINAL:
            self.ledger.finish(launch_id, "aborted", "interrupted before an instance was running")

    def _wait_running(self, launch_id: str, iid: int, renew: Callable[[], None]) -> Optional[str]:
        """`running`; `gone` when the instance ended by itself before it was seen running (its run is over:
        another offer would run the stages again); None when it did not get to run in time."""
        limit = self.cfg.lifecycle.loading_timeout_minutes * 60
        start = time.time()
        seen, last_asked, renewed = None, start, start
        while time.time() - start < limit:
            asked = time.time()
            inst = self.provider.show(iid)
            status = "gone" if inst is None else inst.status
            if status != seen:
                t, within = bracketed(last_asked, time.time())
                if status != "gone":
                    self.ledger.event(launch_id, status, {"within_s": within}, set_state=True, t=t)
                self.say("instance", f"{iid} is {status}")
                seen = status
            last_asked = asked
            if status in (RUNNING, "gone"):
                return status
            if status in ENDED_WITHOUT_TEARDOWN:
                return None
            if time.time() - renewed > FOLLOW_RENEW_SECONDS:
                renewed = time.time()
                renew()
            time.sleep(min(self.opts.poll_seconds, 0.5))
        self.say("instance", f"{iid} still {seen} after {limit:.0f} s")
        return None
