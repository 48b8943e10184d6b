"""Following a running instance: its status, its log lines (stage times, result, watchdog), and the
launcher's share of teardown when the instance does not destroy itself.

`Launcher` is a `Following`: the methods here use its provider, ledger, printer and options.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional

from ..interrupts import Interrupted
from ..protocol import (
    EXIT_INTERRUPTED,
    EXIT_WATCHDOG,
    FOLLOW_LEASE_SECONDS,
    FOLLOW_RENEW_SECONDS,
    RESULT_LINE,
    WATCHDOG_LINE,
    Label,
    Outcome,
    parse_label,
    parse_stage_line,
)
from ..states import ENDED_BY_DESTROY, ENDED_WITHOUT_TEARDOWN, RUNNING, STOPPED
from .progress import LogTail
from .provider import ProviderError
from .teardown import destroy_and_record

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..store import StoreSpec
    from ..targets.base import LaunchResult
    from .options import LaunchOptions
    from .progress import Heartbeat, Printer
    from .provider import Provider


PAUSED_BRIEF = " (outbid, or stopped outside the launcher): its programs and watchdog are stopped, its storage still bills"
PAUSED = PAUSED_BRIEF + "; waiting for it to run again, and destroying it at the hard deadline"


class Following:
    provider: Provider
    ledger: Ledger
    opts: LaunchOptions
    say: Printer
    heartbeat: Heartbeat
    echo: Callable[[str], None]
    auto_shutdown: bool
    store: Optional[StoreSpec]

    # --- following ----------------------------------------------------------------------------
    def follow(self, launch_id: str, iid: int, result: LaunchResult) -> LaunchResult:
        last_status = "running"
        outcome = Outcome()
        # A change happened somewhere between two polls: its midpoint halves the timeline's error.
        last_asked = time.time()
        gone_at = None
        reported_at = None
        deadline = float(self.ledger.get(launch_id).get("deadline") or "inf")
        deadline_hit = False
        # Vast's logs API takes >= 0.3 s a call: read it beside the status polls, not between them.
        tail = LogTail(self.provider, iid, self.opts.poll_seconds, on_text=self._acknowledger(launch_id, iid))
        self.heartbeat.heard()
        renewed = 0.0
        recover = self.recovery()
        recover_why, stopped_since = None, None
        try:
            while True:
                if time.time() - renewed > FOLLOW_RENEW_SECONDS:
                    renewed = time.time()
                    self._say_following(launch_id, iid, True)
                asked = time.time()
                inst = self.provider.show(iid)
                if inst is None:
                    gone_at, within = bracketed(last_asked, time.time())
                    self.ledger.event(launch_id, "gone", {"within_s": within}, set_state=False, t=gone_at)
                    break
                status = inst.status
                if status != last_status:
                    t, within = bracketed(last_asked, time.time())
                    self.ledger.event(launch_id, status, {"within_s": within}, t=t)
                    paused = (
                        PAUSED
                        if recover is None
                        else f"{PAUSED_BRIEF}; replaced if still stopped after {recover.stopped_minutes:g} min"
                    )
                    self.say("instance", f"{iid} is {status}" + (paused if status == STOPPED else ""))
                    self.heartbeat.heard()
                    last_status = status
                    stopped_since = time.time() if status == STOPPED else None
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
                if status in ENDED_WITHOUT_TEARDOWN:
                    self.say("teardown", f"instance {iid} is {status} without tearing down: destroying it")
                    destroy_and_record(self.provider, self.ledger, launch_id, iid, f"instance {status}; destroyed by the launcher")
                    recover_why = f"instance {iid} {status} without a result" if recover else None
                    break
                if recover and stopped_since is not None and time.time() - stopped_since > recover.stopped_minutes * 60:
                    recover_why = f"instance {iid} stopped (outbid) for more than {recover.stopped_minutes:g} min"
                    self.say("teardown", f"{recover_why}: destroying it")
                    destroy_and_record(self.provider, self.ledger, launch_id, iid, f"{recover_why}; destroyed by the launcher")
                    break
                past = time.time() - deadline
                if past > 0 and (status != RUNNING or past > self.opts.teardown_grace):
                    # Stopped (outbid), the in-instance watchdog is stopped too; running, it had its grace.
                    why = f"hard deadline passed while the instance was {status}" + (
                        f" and its watchdog had not destroyed it {past:.0f} s later" if status == RUNNING else ""
                    )
                    self.say("teardown", f"{why}: destroying instance {iid}")
                    destroy_and_record(self.provider, self.ledger, launch_id, iid, f"{why}; destroyed by the launcher")
                    deadline_hit = True
                    break
                if reported_at is not None and time.time() - reported_at > self.opts.teardown_grace:
                    self.say(
                        "teardown",
                        f"instance {iid} did not destroy itself within {self.opts.teardown_grace:.0f} s of its result: destroying it",
                    )
                    destroy_and_record(
                        self.provider,
                        self.ledger,
                        launch_id,
                        iid,
                        outcome.end_reason(destroyed_by_self=False)
                        + f"; it did not destroy itself within {self.opts.teardown_grace:.0f} s, "
                        "so the launcher did",
                    )
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
        if outcome.rc is not None or outcome.watchdog:
            self._record_result(launch_id, outcome)
        row = self.ledger.get(launch_id)
        ended_elsewhere = row["state"] in ENDED_BY_DESTROY  # `down`, the reaper: nothing to recover
        if not ended_elsewhere:
            self.ledger.finish(launch_id, "destroyed", outcome.end_reason(), t=gone_at)
        self.after_follow(launch_id, iid)
        if recover and recover_why is None and not ended_elsewhere and outcome.rc is None and not outcome.watchdog:
            recover_why = f"instance {iid} gone without a result"
        if recover_why is not None:
            return self.recover(launch_id, result, recover_why)
        row = self.ledger.get(launch_id)
        result.state, result.end_reason = row["state"], row["end_reason"]
        result.exit_code = EXIT_WATCHDOG if deadline_hit else outcome.exit_code()
        result.outputs = self.outputs_location(launch_id)
        self.say("done", f"{result.end_reason}" + (f"; outputs in {result.outputs}" if result.outputs else ""))
        return result

    def recovery(self):
        """lifecycle.recover when this launch may recover (the Launcher's; None: it ends where it stops)."""
        return None

    def recover(self, launch_id: str, result: LaunchResult, why: str) -> LaunchResult:
        raise NotImplementedError

    def _leave_running(self, launch_id: str, iid: int, outcome: Outcome, result: LaunchResult) -> LaunchResult:
        """auto-shutdown is off: the stages ended, the instance stays; say so and return."""
        row = self.ledger.get(launch_id)
        self.echo(
            f"WARNING: stages ended ({outcome.end_reason(destroyed_by_self=False).split(';')[0]}), and "
            f"auto-shutdown is off: instance {iid} keeps running and billing until "
            f"{datetime.fromtimestamp(row['deadline'], timezone.utc):%Y-%m-%d %H:%M UTC}. "
            f"Destroy it with `vast-launch down {launch_id}`."
        )
        self.ledger.event(launch_id, "stages_ended", {"rc": outcome.rc, "failed_stage": outcome.failed_stage}, set_state=False)
        self._say_following(launch_id, iid, False)
        result.state, result.exit_code = "running", outcome.exit_code()
        return result

    def _interrupted_while_following(self, launch_id: str, iid: int, result: LaunchResult, exc: KeyboardInterrupt) -> LaunchResult:
        """Ctrl-C on a terminal asks; otherwise (no terminal, SIGTERM, SIGHUP) the instance is destroyed."""
        keyboard = not isinstance(exc, Interrupted) or exc.from_keyboard
        if keyboard and self.opts.ask_destroy is not None and not self.opts.ask_destroy():
            self.ledger.event(launch_id, "detached", "interrupted; the user chose to detach", set_state=False)
            self._say_following(launch_id, iid, False)
            self.echo(
                f"detached: instance {iid} keeps running with its teardown armed (trap, deadline watchdog). "
                f"Reattach with `vast-launch logs {launch_id} --follow`; destroy with "
                f"`vast-launch down {launch_id}`."
            )
            result.state, result.exit_code = "running", EXIT_INTERRUPTED
            return result
        what = "interrupted" if keyboard else f"{exc} received"
        self.say("abort", f"{what}: destroying instance {iid}")
        destroy_and_record(
            self.provider,
            self.ledger,
            launch_id,
            iid,
            f"interrupted ({exc or 'SIGINT'}) while following; destroyed by the launcher",
            state="aborted",
        )
        row = self.ledger.get(launch_id)
        result.state, result.end_reason, result.exit_code = row["state"], row["end_reason"], EXIT_INTERRUPTED
        return result

    def _print_new_log(self, launch_id: str, outcome: Outcome, tail: LogTail) -> None:
        for line in tail.take():
            self._handle_line(launch_id, line, outcome)

    def _keep_recent_log(self, launch_id: str, tail: LogTail) -> None:
        """The instance's logs go with it: keep the last lines, for `vast-launch logs` afterwards."""
        if tail.recent:
            self.ledger.event(launch_id, "log_tail", {"lines": list(tail.recent), "gaps": tail.gaps}, set_state=False)

    def _handle_line(self, launch_id: str, line: str, outcome: Outcome) -> None:
        """Echo one instance log line and record what it tells (stage times, result, watchdog)."""
        self.echo(f"  | {line}")
        self.heartbeat.heard()
        watchdog = outcome.watchdog
        if outcome.read_line(line):
            self.say(
                "teardown",
                f"stages ended (exit {outcome.rc}); "
                + ("the instance is destroying itself" if self.auto_shutdown else "auto-shutdown is off"),
            )
            self.ledger.event(
                launch_id, "teardown", {"rc": outcome.rc, "failed_stage": outcome.failed_stage}, set_state=False, t=outcome.result_at
            )
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

    def _label(self, launch_id: str) -> Label:
        return parse_label((self.ledger.get(launch_id) or {}).get("label")) or Label(launch_id)

    def _say_following(self, launch_id: str, iid: int, following: bool) -> None:
        """Without an outputs store the instance waits for the follower's acknowledgement, but only while its
        label says that someone follows: a lease renewed while following, dropped on leaving."""
        if self.store is not None or not self.auto_shutdown:
            return
        label = self._label(launch_id)
        label.followed_until = time.time() + FOLLOW_LEASE_SECONDS if following else None
        try:
            self.provider.label(iid, label.text())
        except ProviderError:
            pass

    def _acknowledger(self, launch_id: str, iid: int) -> Callable[[str], None]:
        """For the log thread: acknowledge as soon as a result or watchdog line arrives, so the instance
        waits no longer than it takes to fetch its log once (the main loop records it moments later)."""
        sent: set = set()

        def on_text(text: str) -> None:
            if self.store is not None:  # result.json in the store is the acknowledgement
                return
            for pattern, needed in ((RESULT_LINE, self.auto_shutdown), (WATCHDOG_LINE, True)):
                if needed and pattern.pattern not in sent and pattern.search(text):
                    sent.add(pattern.pattern)
                    label = self._label(launch_id)
                    label.result_seen = True
                    try:
                        self.provider.label(iid, label.text())
                    except ProviderError:
                        pass

        return on_text

    def _record_result(self, launch_id: str, outcome: Outcome) -> None:
        """What the instance reported, in the ledger, unless its log already showed it."""
        seen = [e for e in self.ledger.events(launch_id) if e["state"] in ("teardown", "watchdog")]
        if not seen:
            self.ledger.event(
                launch_id, "teardown", {"rc": outcome.rc, "failed_stage": outcome.failed_stage, "from": "result.json"}, set_state=False
            )

    def stored_outcome(self, launch_id: str) -> Outcome:
        """The result.json this attempt's instance left in the outputs store (an earlier attempt's does not count)."""
        from ..errors import UserError
        from ..store import attempt_result

        try:
            doc = attempt_result(self.ledger.get(launch_id))
        except UserError as exc:
            self.echo(f"WARNING: could not read the outputs store: {exc}")
            return Outcome()
        if doc is not None:
            for t in doc.get("stage_times") or []:
                self.ledger.record_stage(launch_id, t["name"], t["start"], t["end"], t["rc"])
        return Outcome.from_result(doc) if doc else Outcome()

    def outputs_location(self, launch_id: str) -> Optional[str]:
        if self.store is None:
            return None
        from ..store import LaunchOutputs

        found = LaunchOutputs(self.store, launch_id)
        local = found.local_out() if self.store.is_dir else None
        return str(local) if local else found.where("out/")

    def _last_lines(self, launch_id: str, tail: LogTail, lines: Optional[list[str]]) -> Outcome:
        """The lines written after the last fetch (the instance and its logs are gone now): printed and
        recorded once, matched against what was seen by content."""
        outcome = Outcome()
        if lines:
            tail.absorb(lines, events=lambda: lines, stored=True)
            for line in tail.take():
                self._handle_line(launch_id, line, outcome)
        return outcome

    # --- hooks for clouds whose instances' files this machine can read -------------------------
    def final_log(self, launch_id: str, iid: int) -> Optional[list[str]]:
        """The whole log of this attempt, once the instance is gone: the outputs store's copy."""
        from ..errors import UserError
        from ..store import attempt_log

        try:
            text, _ = attempt_log(self.ledger.get(launch_id))
        except UserError:
            return None
        return text.splitlines() if text else None

    def final_outcome(self, launch_id: str, iid: int, tail: LogTail) -> Outcome:
        outcome = self._last_lines(launch_id, tail, self.final_log(launch_id, iid))
        outcome.merge(self.stored_outcome(launch_id))
        return outcome

    def after_follow(self, launch_id: str, iid: int) -> None:
        pass


def bracketed(last_sent: float, answered: float) -> tuple[float, float]:
    """A change seen by a poll happened after the previous poll was sent and before this one was
    answered: its midpoint, and how far from the true moment that can be (`within_s` in the ledger)."""
    return (last_sent + answered) / 2, round((answered - last_sent) / 2, 3)
