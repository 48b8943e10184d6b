"""The local cloud's interruptible market, as on Vast: an instance bidding under a higher bid is stopped (its
programs killed, its storage still billed) until its bid is the highest again; a stopped instance can lose its GPU
to another renter for good; a host can go offline. `Cloud` is an `InterruptibleMarket`."""

from __future__ import annotations

import threading
from typing import Callable, Optional

from .containers import kill_container
from .instance import Instance


class InterruptibleMarket:
    lock: threading.RLock
    instances: dict[int, Instance]
    stop: Callable[..., None]
    start: Callable[[int], None]

    def outbid(self, iid: int, winning_bid: float) -> None:
        """Someone bids `winning_bid` on this machine: an interruptible instance bidding less is stopped
        (its programs killed, its storage still billed) until its bid is the highest again."""
        with self.lock:
            inst = self.instances[iid]
            if inst.bid is None:
                raise ValueError(f"instance {iid} is on demand: only interruptible instances are outbid")
            inst.offer["min_bid"] = winning_bid
            if inst.bid >= winning_bid or inst.status not in ("running", "loading"):
                return
            inst.outbid = True
        self.stop(iid)  # dstack reads an outbid as cur_state == intended_status == next_state == "stopped"

    def change_bid(self, iid: int, price: Optional[float]) -> None:
        """`vastai change bid`: no price means a winning one; an outbid instance that now wins starts again."""
        with self.lock:
            inst = self.instances[iid]
            if inst.bid is None:
                raise ValueError(f"instance {iid} is on demand: it has no bid")
            winning = float(inst.offer.get("min_bid") or 0.0)
            inst.bid = float(price) if price is not None else winning
            regains = inst.outbid and inst.bid >= winning
            if regains:
                inst.outbid = False
        if regains:
            self.start(iid)

    def bid_lost_its_rival(self, iid: int) -> None:
        """The higher bid's job finished: the outbid instance is the highest bidder again and starts."""
        with self.lock:
            inst = self.instances[iid]
            inst.offer["min_bid"] = inst.bid
            regains, inst.outbid = inst.outbid, False
        if regains:
            self.start(iid)

    def take_machine(self, iid: int) -> None:
        """Another renter takes the GPU of this instance (outbidding it, or while it was stopped): it is stopped
        and can no longer start."""
        with self.lock:
            inst = self.instances[iid]
            if inst.status == "destroyed":
                raise ValueError(f"instance {iid} is destroyed")
            inst.machine_lost = True
            inst.intended = "stopped"
            running = inst.status in ("running", "loading")
        if running:
            self.stop(iid)

    def host_offline(self, iid: int) -> None:
        """The host stops reporting: its containers are gone with it, Vast shows `offline` and bills nothing."""
        with self.lock:
            inst = self.instances[iid]
            proc, inst.proc = inst.proc, None
            if inst.status == "destroyed":
                return
            inst.set_state("offline")
        kill_container(inst.marker, proc, grace=0)
