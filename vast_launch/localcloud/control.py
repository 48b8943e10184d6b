"""The local cloud's control endpoints for tests and benchmarks (/_local/...): its event log and instances, fault
injection, offer changes, and what the world does to an instance (a restart, an outbid, a rival's job ending, its
GPU taken, its host offline, its container exiting, a SIGTERM to its process group). Not part of Vast's API."""

from __future__ import annotations

from .http import Plumbing


class LocalControl(Plumbing):
    def local_events(self, who, query):
        with self.server.cloud.lock:
            self._send(200, {"events": list(self.server.cloud.events)})

    def local_instances(self, who, query):
        self._send(200, {"instances": self.server.cloud.describe()})

    def local_faults(self, who, query):
        try:
            self.server.cloud.faults.update(self._body())
        except KeyError as exc:
            self._send(400, {"error": f"unknown fault {exc}"})
            return
        self._send(200, {"success": True})

    def local_offer(self, who, query, oid):
        cloud = self.server.cloud
        if int(oid) not in cloud.offers:
            self._send(404, {"error": "no such offer"})
            return
        self._send(200, {"offer": cloud.set_offer(int(oid), **self._body())})

    def local_restart(self, who, query, iid):
        self.server.cloud.restart(int(iid))
        self._send(200, {"success": True})

    def local_outbid(self, who, query, iid):
        self.server.cloud.outbid(int(iid), float(self._body().get("winning_bid") or 0.0))
        self._send(200, {"success": True})

    def local_rival_gone(self, who, query, iid):
        self.server.cloud.bid_lost_its_rival(int(iid))
        self._send(200, {"success": True})

    def local_take_machine(self, who, query, iid):
        self.server.cloud.take_machine(int(iid))
        self._send(200, {"success": True})

    def local_host_offline(self, who, query, iid):
        self.server.cloud.host_offline(int(iid))
        self._send(200, {"success": True})

    def local_exit(self, who, query, iid):
        self.server.cloud.mark_exited(int(iid))
        self._send(200, {"success": True})

    def local_signal(self, who, query, iid):
        self.server.cloud.signal_group(int(iid))
        self._send(200, {"success": True})
