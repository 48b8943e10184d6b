"""What a following launcher prints: phase lines with elapsed time and cost so far, and the
instance's log, fetched beside the status polls."""

from __future__ import annotations

import threading
import time
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


class LogTail:
    """Fetches an instance's log in a background thread; `latest()` is the newest full text's lines."""

    def __init__(self, provider: Provider, iid: int, pause: float,
                 on_text: Optional[Callable[[str], None]] = None):
        self.provider, self.iid, self.pause = provider, iid, min(pause, 0.25)
        self.on_text = on_text  # called from this thread with each fetched text (the result acknowledgement)
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
                if self.on_text is not None:
                    self.on_text(text)
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
