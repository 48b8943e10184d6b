"""Fault injection for the local cloud: each fault fires a bounded number of times."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    # path substring -> remaining 429 answers
    rate_limit: dict[str, int] = field(default_factory=dict)
    # offer ids that disappear when someone tries to rent them
    vanish_on_create: set[int] = field(default_factory=set)
    # the min_bid the machine of the next create's offer has by the time it arrives (outbid between search and create)
    min_bid_at_next_create: float = 0.0
    # creates that make the instance, then wait this long before answering (a client killed meanwhile never
    # learns the id)
    slow_create_answer_s: float = 0.0
    # create requests that answer 500 although the instance was created
    create_error_but_creates: int = 0
    # destroy requests that fail, and with which status
    destroy_failures: int = 0
    destroy_failure_status: int = 500
    # destroy requests that answer success but leave the instance as it was (a destroy that is lost)
    destroy_ignored: int = 0
    # instances created from now on never leave `loading`
    loading_forever: bool = False
    # instances created from now on get an image without the vastai CLI on PATH
    no_vastai_cli: bool = False
    # instances created from now on get an image without git (and without a package manager to add it)
    no_git: bool = False
    # instances created from now on get a slim Python image: pip, and none of this host's packages
    bare_python: bool = False
    # instances created from now on run their bootstrap without its in-container teardown layers (trap and
    # watchdog): what is left is the launcher and the reaper
    layers_off: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_rate_limit(self, path: str) -> bool:
        with self.lock:
            for prefix, left in self.rate_limit.items():
                if left > 0 and prefix in path:
                    self.rate_limit[prefix] = left - 1
                    return True
        return False

    def take(self, name: str) -> bool:
        with self.lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
        return False

    def update(self, spec: dict) -> None:
        with self.lock:
            for key, value in spec.items():
                if key == "rate_limit":
                    self.rate_limit.update({str(k): int(v) for k, v in value.items()})
                elif key == "slow_create_answer_s":
                    self.slow_create_answer_s = float(value)
                elif key == "min_bid_at_next_create":
                    self.min_bid_at_next_create = float(value)
                elif key == "vanish_on_create":
                    self.vanish_on_create.update(int(v) for v in value)
                elif key in ("create_error_but_creates", "destroy_failures", "destroy_failure_status", "destroy_ignored"):
                    setattr(self, key, int(value))
                elif key in ("loading_forever", "no_vastai_cli", "no_git", "bare_python", "layers_off"):
                    setattr(self, key, bool(value))
                else:
                    raise KeyError(key)
