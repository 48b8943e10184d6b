"""Ctrl-C, SIGTERM and SIGHUP of the launcher become one exception, raised once.

A closed terminal (SIGHUP), a CI cancel or `kill` (SIGTERM) must run the same teardown as Ctrl-C.
After the first signal the others are ignored, so the teardown that follows cannot be cut short.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def from_keyboard(self) -> bool:
        return self.signum == signal.SIGINT


def _raise(signum, frame):
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def ctrl_c_at_a_prompt():
    """While a question waits for an answer after the first interrupt: a second Ctrl-C ends the prompt
    (KeyboardInterrupt) instead of being ignored; SIGTERM and SIGHUP stay ignored."""
    before = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, before)


@contextmanager
def signals_interrupt():
    """Within the block, the first of SIGINT/SIGTERM/SIGHUP raises Interrupted; later ones are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in HANDLED}
    for sig in HANDLED:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
