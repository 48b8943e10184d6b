"""The contract between the instance's scripts (vast_launch/vast/shell/) and the launcher.

The bootstrap prints event lines, leaves files in its work dir `vl-<launch-id>` and writes the outputs
store's objects under `<url>/<launch-id>/`; this module is the one place that knows their names and
shapes, turns them into an `Outcome`, and maps an outcome to the end reason and the exit code the user
sees. It is shipped to the instance with the helpers that import it: standard library only.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

LABEL_PREFIX = "vast-launch:"
# A following launcher appends this to the label once it recorded the result. Without an outputs store
# the instance waits for it (at most VL_ACK_WAIT seconds) before destroying itself, so the result is not
# lost with the instance's logs, but only while the label says a launcher follows (FOLLOWED_UNTIL, renewed
# by the follower): a detached or killed launcher costs no wait. With a store, result.json is the
# acknowledgement and nobody waits.
RESULT_SEEN = " result-seen"
ACK_WAIT_SECONDS = 10
FOLLOWED_UNTIL = "fw"  # label field: a launcher follows until this epoch second
FOLLOW_RENEW_SECONDS = 15
FOLLOW_LEASE_SECONDS = 45


# What a launch id may be: it names the label, work-dir paths and a line of the rendered bootstrap.
LAUNCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def new_launch_id(name: str) -> str:
    """`<name slug>-<UTC time>-<4 hex>`: sortable by time, unique across launchers."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "launch"
    return f"{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class Label:
    """What an instance's label says: `vast-launch:<launch id> ws=<workspace> dl=<deadline> [fw=<t>] [result-seen]`.

    The workspace names the ledger that launched it (two teammates, or a laptop and CI, on one account),
    the deadline is the instance's own hard deadline: enough for another workspace's reaper to know when
    this instance's teardown layers have had their chance. Labels written before these fields still parse."""

    launch_id: str
    workspace: Optional[str] = None
    deadline: Optional[float] = None
    followed_until: Optional[float] = None
    result_seen: bool = False

    def text(self) -> str:
        fields = [LABEL_PREFIX + self.launch_id]
        fields += [f"ws={self.workspace}"] if self.workspace else []
        fields += [f"dl={int(self.deadline)}"] if self.deadline else []
        fields += [f"{FOLLOWED_UNTIL}={int(self.followed_until)}"] if self.followed_until else []
        return " ".join(fields) + (RESULT_SEEN if self.result_seen else "")


def parse_label(label: Optional[str]) -> Optional[Label]:
    """One of our labels, parsed; None for anyone else's."""
    label = label or ""
    if not label.startswith(LABEL_PREFIX):
        return None
    words = label[len(LABEL_PREFIX) :].split()
    if not words or not LAUNCH_ID.match(words[0]):
        return None
    out = Label(words[0], result_seen=RESULT_SEEN.strip() in words[1:])
    for word in words[1:]:
        key, _, value = word.partition("=")
        try:
            if key == "ws" and value:
                out.workspace = value
            elif key == "dl":
                out.deadline = float(value)
            elif key == FOLLOWED_UNTIL:
                out.followed_until = float(value)
        except ValueError:
            continue
    return out


def label_for(launch_id: str, workspace: Optional[str] = None, deadline: Optional[float] = None) -> str:
    return Label(launch_id, workspace, deadline).text()


def launch_id_of(label: Optional[str]) -> Optional[str]:
    """The launch id in one of our labels (whatever fields follow it), else None."""
    parsed = parse_label(label)
    return parsed.launch_id if parsed else None


WORKSPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# Exit codes of `vast-launch launch` (documented in the README).
EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_NO_RESULT = 3  # the instance ended without reporting a result (destroyed from outside, exited, lost)
EXIT_NOT_DESTROYED = 4  # a destroy was asked for and could not be confirmed: the instance may still run and bill
EXIT_WATCHDOG = 124  # the in-instance watchdog ended the run: deadline, budget or idle (as timeout(1))
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP of the launcher

# Work-dir files the bootstrap writes.
RESULT_FILE = "result"  # rc=<n> failed_stage=<name> signal=<TERM|INT|HUP|> t=<epoch>
WATCHDOG_FILE = "deadline_hit"  # deadline | budget | idle
STAGE_TIMES_FILE = "stage_times"  # <name> <start> <end> <rc>, one line per finished attempt
CURRENT_STAGE_FILE = "current_stage"
EVENTS_FILE = "events"  # the stage runner's start/done/FAILED lines, in order
BOOT_LOG = "boot.log"
HELPERS_DIR = ".vl"  # inside the work dir: the instance's Python helpers, its secrets (0600) and sync state

# What the bootstrap moves out of the environment into the helpers' secrets dir before anything else runs.
INSTANCE_SECRETS = (
    "WANDB_API_KEY",
    "VL_GIT_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "CONTAINER_API_KEY",
)

# Names the launch (or Vast) sets in the instance's environment: `--env` may not set them.
RESERVED_ENV_PREFIXES = ("VL_", "CONTAINER_", "VAST_", "VASTAI_", "LOCALCLOUD_")
RESERVED_ENV = frozenset(
    {"WANDB_RUN_GROUP", "WANDB_GROUP", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR", "DATA_DIRECTORY"}
    | {"PUBLIC_IPADDR", "GPU_COUNT", "PYTHONPATH", "PATH", "HOME", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_ROOT_USER_ACTION"}
    | set(INSTANCE_SECRETS)
)


def reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


# The outputs store: `<url>/<launch-id>/` holds these. Written at stage ends, every sync_every_minutes,
# and before every destroy (result.json first, so that a slow final sync cannot lose the outcome).
STORE_OUT = "out/"  # what the stages wrote to $VL_OUT, checkpoints included
STORE_LOGS = "log/"  # the bootstrap's log of each attempt: store_log(attempt)
STORE_EVENTS = EVENTS_FILE
STORE_RESULT = "result.json"
# A file being written and then renamed into place is whole only under its final name: never synced.
NOT_SYNCED_SUFFIXES = (".tmp", ".part")
# result.json's `end_reason`; its `outputs` says whether the final sync finished.
END_REASONS = ("success", "stage_failure", "signal", "deadline", "budget", "idle")

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


def store_log(attempt: int) -> str:
    """Each instance of a launch (a resume, a recovery) keeps its own log in the store."""
    return f"{STORE_LOGS}boot-{int(attempt)}.log"


def workdir_name(launch_id: str) -> str:
    return f"vl-{launch_id}"


# The local cloud's layout, as the launcher sees it (the cloud itself names these apart: it imports nothing
# from the launcher; test_protocol keeps the two equal).
LOCAL_INSTANCE_DIR = "instance-{id}"  # an instance's files under the cloud's root
WORKDIR_NOTE = "/tmp/vl-{launch_id}.dir"  # where the bootstrap notes its work dir (for ssh sessions)


def local_instance_workdir(cloud_root: Path, instance_id: int, launch_id: str) -> Path:
    """A local-cloud instance's work dir for a launch, on this machine."""
    return cloud_root / LOCAL_INSTANCE_DIR.format(id=instance_id) / workdir_name(launch_id)


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

    @classmethod
    def from_result(cls, doc: dict) -> "Outcome":
        """The outcome a result.json in the outputs store records (`result_document`)."""
        out = cls(
            rc=doc.get("rc") if isinstance(doc.get("rc"), int) else None,
            failed_stage=str(doc.get("failed_stage") or ""),
            signal=str(doc.get("signal") or ""),
            result_at=float(doc["t"]) if isinstance(doc.get("t"), (int, float)) else None,
            watchdog=doc.get("watchdog") if doc.get("watchdog") in WATCHDOG_REASONS else None,
        )
        return out

    def end_code(self) -> str:
        """One of END_REASONS (or `unknown`): result.json's machine-readable end reason."""
        if self.watchdog_ended_run:
            return str(self.watchdog)
        if self.rc is None:
            return "unknown"
        return "success" if self.rc == 0 else "signal" if self.signal else "stage_failure"

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


def stage_times(vl_dir: Path) -> list[dict]:
    """The stage runner's exact stage times (STAGE_TIMES_FILE), one entry per finished attempt."""
    try:
        lines = (vl_dir / STAGE_TIMES_FILE).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4:
            try:
                out.append({"name": parts[0], "start": float(parts[1]), "end": float(parts[2]), "rc": int(parts[3])})
            except ValueError:
                continue
    return out


def result_document(vl_dir: Path, ended_by: str, launch: dict, outputs: str) -> dict:
    """result.json, composed on the instance from its work dir when teardown starts.

    ended_by: `done` when the stages (or setup) ended, else the watchdog's reason (deadline, budget, idle);
    launch: launch_id, commit, attempt, instance_id; outputs: `syncing` before the final sync, then
    `complete` or `partial` (the sync ran out of time or failed)."""
    out = Outcome.from_workdir(vl_dir)
    if ended_by in WATCHDOG_REASONS:
        out.watchdog = ended_by
        if out.rc is None:  # the watchdog ends a run still going: the stage it was in
            try:
                out.failed_stage = (vl_dir / CURRENT_STAGE_FILE).read_text().strip()
            except OSError:
                out.failed_stage = ""
    return {
        "version": 1,
        **{k: launch.get(k) for k in ("launch_id", "commit", "attempt", "instance_id")},
        "rc": out.rc,
        "failed_stage": out.failed_stage,
        "signal": out.signal,
        "watchdog": out.watchdog,
        "end_reason": out.end_code(),
        "exit_code": out.exit_code(),
        "stage_times": stage_times(vl_dir),
        "t": time.time(),
        "outputs": outputs,
    }
