"""The contract between the instance's scripts (vast_launch/vast/shell/*.sh) and the launcher.

The bootstrap prints event lines and leaves files in its work dir `vl-<launch-id>`; this module is
the one place that knows their names and shapes, turns them into an `Outcome`, and maps an outcome
to the end reason and the exit code the user sees.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

LABEL_PREFIX = "vast-launch:"
# A following launcher appends this to the label once it recorded the result; the trap waits for it
# (at most VL_ACK_WAIT seconds) before destroying, so the result is not lost with the instance's logs.
RESULT_SEEN = " result-seen"
ACK_WAIT_SECONDS = 10


# What a launch id may be: it names the label, work-dir paths and a line of the rendered bootstrap.
LAUNCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def new_launch_id(name: str) -> str:
    """`<name slug>-<UTC time>-<4 hex>`: sortable by time, unique across launchers."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "launch"
    return f"{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def label_for(launch_id: str) -> str:
    return LABEL_PREFIX + launch_id


def launch_id_of(label: Optional[str]) -> Optional[str]:
    """The launch id in one of our labels (with or without the result-seen mark), else None."""
    label = label or ""
    if not label.startswith(LABEL_PREFIX):
        return None
    return label[len(LABEL_PREFIX) :].split(" ", 1)[0] or None


# Exit codes of `vast-launch launch` (documented in the README).
EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_NO_RESULT = 3  # the instance ended without reporting a result (destroyed from outside, exited, lost)
EXIT_WATCHDOG = 124  # the in-instance watchdog ended the run: deadline, budget or idle (as timeout(1))
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP of the launcher

# Work-dir files the bootstrap writes.
RESULT_FILE = "result"  # rc=<n> failed_stage=<name> signal=<TERM|INT|HUP|> t=<epoch>
WATCHDOG_FILE = "deadline_hit"  # deadline | budget | idle
STAGE_TIMES_FILE = "stage_times"  # <name> <start> <end> <rc>, one line per finished attempt
BOOT_LOG = "boot.log"

RESULT_LINE = re.compile(r"\[vast-launch\] .*result rc=(\d+) failed_stage=(\S*) at=([\d.]+)(?: signal=(\w+))?")
STAGE_LINE = re.compile(
    r"\[vast-launch\] stage (\d+)/(\d+) (\S+): (start|done|FAILED \(exit (\d+)\)) "
    r"at=([\d.]+)(?: start=([\d.]+))?"
)
WATCHDOG_LINE = re.compile(r"\[vast-launch\] \S+ (?:(deadline|budget) reached|(idle) for \d+ s): destroying")

# A SLURM job's script prints these around its stage; a job the controller has forgotten is read back
# from its exit line.
SLURM_START_ECHO = 'echo "[vast-launch] slurm job $SLURM_JOB_ID stage {stage}: start at=$(date +%s.%N) on $(hostname)"'
SLURM_EXIT_ECHO = 'echo "[vast-launch] slurm job $SLURM_JOB_ID stage {stage}: exit $rc at=$(date +%s.%N)"'
SLURM_EXIT_LINE = re.compile(r"\[vast-launch\] slurm job \S+ stage \S+: exit (\d+) at=")

WATCHDOG_REASONS = {
    "deadline": "deadline reached (lifecycle.max_hours)",
    "budget": "budget reached (lifecycle.max_cost_usd)",
    "idle": "idle too long (lifecycle.idle_minutes)",
}


def workdir_name(launch_id: str) -> str:
    return f"vl-{launch_id}"


@dataclass
class StageEvent:
    index: int
    total: int
    name: str
    phase: str  # start | done | failed
    at: float
    start: Optional[float] = None
    rc: Optional[int] = None


def parse_stage_line(line: str) -> Optional[StageEvent]:
    m = STAGE_LINE.search(line)
    if m is None:
        return None
    phase = "start" if m.group(4) == "start" else "done" if m.group(4) == "done" else "failed"
    return StageEvent(
        int(m.group(1)),
        int(m.group(2)),
        m.group(3),
        phase,
        float(m.group(6)),
        float(m.group(7)) if m.group(7) else None,
        0 if phase == "done" else int(m.group(5)) if phase == "failed" else None,
    )


@dataclass
class Outcome:
    """What the instance reported about how its run ended."""

    rc: Optional[int] = None
    failed_stage: str = ""
    signal: str = ""
    result_at: Optional[float] = None
    watchdog: Optional[str] = None  # deadline | budget | idle

    def read_line(self, line: str) -> bool:
        """Take what one log line tells; True when it was the result line."""
        w = WATCHDOG_LINE.search(line)
        if w:
            self.watchdog = w.group(1) or w.group(2)
        m = RESULT_LINE.search(line)
        if m is None:
            return False
        self.rc, self.failed_stage = int(m.group(1)), m.group(2)
        self.result_at, self.signal = float(m.group(3)), m.group(4) or ""
        return True

    @classmethod
    def from_workdir(cls, vl_dir: Path) -> "Outcome":
        """The exact outcome from the launch's own work dir (local cloud, or read over SSH)."""
        out = cls()
        result = vl_dir / RESULT_FILE
        if result.exists():
            kv = dict(p.split("=", 1) for p in result.read_text().split() if "=" in p)
            out.rc = int(kv.get("rc", -1))
            out.failed_stage, out.signal = kv.get("failed_stage", ""), kv.get("signal", "")
            out.result_at = float(kv["t"]) if kv.get("t") else None
        hit = vl_dir / WATCHDOG_FILE
        if hit.exists():
            out.watchdog = hit.read_text().strip() or "deadline"
        return out

    def merge(self, other: "Outcome") -> None:
        for name in ("rc", "failed_stage", "signal", "result_at", "watchdog"):
            if getattr(other, name) not in (None, ""):
                setattr(self, name, getattr(other, name))

    @property
    def watchdog_ended_run(self) -> bool:
        """The watchdog fired before the stages reported a result (or the trap's result came from its kill)."""
        return self.watchdog is not None and (self.rc is None or self.rc != 0 and self.signal != "")

    def end_reason(self, destroyed_by_self: bool = True) -> str:
        by = "the instance destroyed itself" if destroyed_by_self else "the instance was destroyed"
        if self.watchdog_ended_run:
            return f"{WATCHDOG_REASONS.get(self.watchdog, self.watchdog)}: destroyed by the in-instance watchdog"
        if self.rc is None:
            return "instance gone without a result (destroyed outside this launcher, or its log was lost)"
        if self.rc == 0:
            tail = f"; then {WATCHDOG_REASONS[self.watchdog]}" if self.watchdog in WATCHDOG_REASONS else ""
            return f"completed: all stages done; {by}{tail}"
        stage = self.failed_stage or "setup"
        if self.signal:
            return f"terminated (SIG{self.signal}) in stage {stage} (exit {self.rc}); {by}"
        return f"failed in stage {stage} (exit {self.rc}); {by}"

    def exit_code(self) -> int:
        if self.watchdog_ended_run:
            return EXIT_WATCHDOG
        if self.rc is None:
            return EXIT_NO_RESULT
        return self.rc if 0 <= self.rc < 256 else EXIT_NO_RESULT
