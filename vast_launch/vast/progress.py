"""What a following launcher prints: phase lines with elapsed time and cost so far, and the
instance's log, fetched beside the status polls."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional

from .provider import Provider, ProviderError


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


# Every line the bootstrap writes itself starts with "[vast-launch] "; as a logs-API filter this text
# means the same to a fixed-string and to a regex grep.
EVENT_MARK = "vast-launch] "
# Vast's logs API returns the last 1,000 lines unless told otherwise; events are asked for this far back.
API_DEFAULT_TAIL = 1000
EVENTS_TAIL = 100_000
RECENT_LINES = 200  # what the ledger keeps of each followed launch's log


# A log's copy in the outputs store is taken before the instance's last lines (the final sync, the destroy)
# are written: those lines, already seen live, are not in it.
UNSTORED_TAIL = 20


def new_lines(before: list[str], now: list[str], stored: bool = False) -> tuple[list[str], bool]:
    """The lines of `now` (a later tail of the same log) that follow its overlap with `before`, and
    whether nothing overlapped (more lines were written between the two fetches than a tail holds).
    Among overlaps the longest wins, so repeated identical lines are not printed twice. `stored`: `now` is
    the store's copy, which may lack up to UNSTORED_TAIL of the last lines seen."""
    fresh, gap = _new_lines(before, now)
    for cut in range(1, min(UNSTORED_TAIL, len(before) - 1) + 1) if stored and gap else ():
        fresh, found_gap = _new_lines(before[:-cut], now)
        if not found_gap:
            return fresh, False
    return fresh, gap


def _new_lines(before: list[str], now: list[str]) -> tuple[list[str], bool]:
    if not before:
        return now, False
    last = before[-1]
    for j in range(min(len(now), len(before)) - 1, -1, -1):
        if now[j] == last and now[: j + 1] == before[len(before) - j - 1 :]:
            return now[j + 1 :], False
    return now, True


class LogTail:
    """Follows an instance's log in a background thread by content, not by length: the logs API returns
    only the last lines, so each fetch is matched against the previous one. When a fetch does not
    overlap the previous one, the bootstrap's own lines that scrolled out are fetched with the API's
    filter, so no stage or result line is lost however much a stage prints."""

    def __init__(self, provider: Provider, iid: int, pause: float, on_text: Optional[Callable[[str], None]] = None):
        self.provider, self.iid, self.pause = provider, iid, min(pause, 0.25)
        self.on_text = on_text  # called from this thread with each fetched text (the result acknowledgement)
        self.gaps = 0
        self.recent: deque[str] = deque(maxlen=RECENT_LINES)
        self._window: list[str] = []
        self._pending: list[str] = []
        self._events_seen: set[str] = set()
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
                # Lines lost to a gap are fetched again before the result is acknowledged: the
                # acknowledgement lets the instance destroy itself, and its logs with it.
                self.absorb(text.splitlines(), events=self._fetch_events)
                if self.on_text is not None:
                    self.on_text(text)
            self._stop.wait(self.pause)

    def absorb(self, lines: list[str], events: Optional[Callable[[], Optional[list[str]]]] = None, stored: bool = False) -> None:
        """Take a newer tail of the log (`stored`: the store's copy); after a gap, `events()` gives the
        bootstrap's lines, to find the lost ones."""
        with self._lock:
            fresh, gap = new_lines(self._window, lines, stored)
            # A first fetch that fills a whole tail may already have lost the lines before it.
            gap = gap or (not self._window and len(lines) >= API_DEFAULT_TAIL)
            self._window = lines
        if gap:
            self.gaps += 1
            found = events() if events else None
            if found is None:
                fresh = ["[follower] log lines scrolled out and could not be fetched again"] + fresh
            else:
                fresh = self._lost_events(lines, found) + fresh
        with self._lock:
            for line in fresh:
                if EVENT_MARK in line:
                    self._events_seen.add(line)
            self._pending.extend(fresh)
            self.recent.extend(fresh)

    def _lost_events(self, window: list[str], events: list[str]) -> list[str]:
        in_window, lost = set(window), []
        for line in events:
            if line in in_window:
                break  # from here on the window has them, in order
            if EVENT_MARK in line and line not in self._events_seen:
                lost.append(line)
        return lost

    def _fetch_events(self) -> Optional[list[str]]:
        try:
            return self.provider.logs(self.iid, tail=EVENTS_TAIL, filter=EVENT_MARK).splitlines()
        except (ProviderError, TimeoutError):
            return None

    def take(self) -> list[str]:
        """The lines that arrived since the last call, in order."""
        with self._lock:
            lines, self._pending = self._pending, []
            return lines

    def stop(self, wait: float = 10.0) -> None:
        """Let a request in flight finish, so lines written just before the end are not lost."""
        self._stop.set()
        self._thread.join(wait)


class Heartbeat:
    """A progress line when the instance has been silent for `interval` seconds: which stage, how long
    it has run, how long it has been quiet (the Printer adds elapsed time and cost so far)."""

    def __init__(self, interval: float, now: Optional[float] = None):
        self.interval = interval
        self.quiet_since = now or time.time()
        self.stage: Optional[tuple[str, str, float]] = None  # (phase label, name, started)

    def heard(self, now: Optional[float] = None) -> None:
        self.quiet_since = now or time.time()

    def stage_started(self, label: str, name: str, now: Optional[float] = None) -> None:
        self.stage = (label, name, now or time.time())

    def stage_ended(self) -> None:
        self.stage = None

    def due(self, status: str, now: Optional[float] = None) -> Optional[tuple[str, str]]:
        """(phase, message) when a heartbeat is due, else None; a due heartbeat counts as output."""
        now = now or time.time()
        quiet = now - self.quiet_since
        if self.interval <= 0 or quiet < self.interval:
            return None
        self.quiet_since = now
        if self.stage is None:
            return "waiting", f"instance {status}; no output for {quiet:.0f} s"
        label, name, started = self.stage
        return label, f"{name} running for {_span(now - started)}; no output for {quiet:.0f} s"


def _span(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
