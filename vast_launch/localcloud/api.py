"""The subset of the Vast REST API that the `vastai` client uses, as the real service answers it.

See shared/reference/vast-api.md. Control endpoints for tests live under /_local/.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Callable, Optional

from .control import LocalControl
from .offers import priced_offer
from .search import comes_after, matches, sort_rows, sort_values

LOGS_DEFAULT_TAIL = 1000  # the logs API's default (vastai CLI: "--tail ... (default '1000')")


class VastApi(LocalControl):
    def current_user(self, who, query):
        self._send(
            200,
            {
                "id": 1,
                "username": "local",
                "email": "local@localhost",
                "credit": 1000.0,
                "balance": 0.0,
                "can_pay": True,
                "ssh_key": "",
            },
        )

    def gpu_names(self, who, query):
        names = sorted({o["gpu_name"] for o in self.server.cloud.offers.values()} | {"RTX 4090", "RTX 3090"})
        self._send(200, {"gpu_names": names})

    def _found(self, q: dict) -> list[dict]:
        cloud = self.server.cloud
        storage = float(q.get("allocated_storage") or 5.0)
        with cloud.lock:
            rows = [priced_offer(o, storage) for oid, o in cloud.offers.items() if cloud.rentable(oid)]
        rows = sort_rows([r for r in rows if matches(r, q)], q.get("order"))
        return rows[: int(q["limit"])] if q.get("limit") else rows

    def search(self, who, query, q: Optional[dict] = None):
        self._send(200, {"offers": self._found(q if q is not None else self._body())})

    def launch_instance(self, who, query):
        """`vastai launch instance`: search with `q` and rent the first offer found, in one call."""
        body = self._body()
        found = self._found(body.get("q") or {})
        if not found:
            self._send(404, {"success": False, "error": "no_such_ask", "msg": "no offer matches the query"})
            return
        self.create(who, query, found[0]["id"])

    def search_new(self, who, query):
        body = self._body()
        self.search(who, query, q=body.get("q") or {})

    def create(self, who, query, offer_id):
        cloud = self.server.cloud
        oid = int(offer_id)
        body = self._body()
        with cloud.lock:
            if oid in cloud.faults.vanish_on_create and oid in cloud.offers:
                # Rented by someone else between search and create: it leaves search, as on Vast.
                cloud.faults.vanish_on_create.discard(oid)
                cloud.offers[oid]["rented"] = True
            if cloud.faults.min_bid_at_next_create and oid in cloud.offers:
                cloud.offers[oid]["min_bid"], cloud.faults.min_bid_at_next_create = cloud.faults.min_bid_at_next_create, 0.0
        gone = {"success": False, "error": "no_such_ask", "msg": f"Instance type {oid} is no longer available."}
        if not cloud.rentable(oid):
            self._send(404, gone)
            return
        problem = _validate_create(body)
        if problem:
            self._send(400, {"success": False, "error": "invalid_args", "msg": problem})
            return
        inst = cloud.rent(oid, body)
        if inst is None:  # the last place went to another create meanwhile
            self._send(404, gone)
            return
        if cloud.faults.slow_create_answer_s:
            time.sleep(cloud.faults.slow_create_answer_s)
        if inst.outbid:  # the bid is under the machine's minimum: made, stopped, and answered as an error
            self._send(
                200,
                {
                    "success": False,
                    "error": "insufficient_bid",
                    "msg": f"bid ${inst.bid:.4f}/h is below the current minimum bid ${float(inst.offer.get('min_bid') or 0):.4f}/h: "
                    "the instance was created stopped",
                    "new_contract": inst.id,
                },
            )
            return
        if cloud.faults.take("create_error_but_creates"):
            self._send(500, {"success": False, "error": "internal_error", "msg": "create timed out", "new_contract": inst.id})
            return
        self._send(200, {"success": True, "new_contract": inst.id, "instance_api_key": inst.api_key})

    def _instance_for(self, who, iid: int):
        cloud = self.server.cloud
        inst = cloud.instances.get(iid)
        if inst is None or inst.status == "destroyed":
            return None
        if who == "account" or who == f"instance:{iid}":
            return inst
        return None

    def show(self, who, query, iid):
        inst = self._instance_for(who, int(iid))
        self._send(200, {"instances": inst.row() if inst else None})

    def list_v0(self, who, query):
        self._send(
            410, {"success": False, "error": "deprecated_endpoint", "msg": "This endpoint is deprecated; use /api/v1/instances/"}
        )

    def list_v1(self, who, query):
        cloud = self.server.cloud
        filters = json.loads(query.get("select_filters") or "{}")
        order = [[o["col"], o.get("dir", "asc")] for o in json.loads(query.get("order_by") or "[]")]
        limit = max(1, min(int(query.get("limit") or 25), 100))
        order = [o for o in order if o[0] != "id"] + [next((o for o in order if o[0] == "id"), ["id", "asc"])]
        rows = [i.row() for i in cloud.live()]
        rows = sort_rows([r for r in rows if matches(r, filters)], order)
        labels: dict[str, int] = {}
        for r in rows:
            labels[r["label"]] = labels.get(r["label"], 0) + 1
        total = len(rows)
        if query.get("after_token"):
            after = json.loads(base64.urlsafe_b64decode(query["after_token"]))["values"]
            rows = [r for r in rows if comes_after(sort_values(r, order), after, order)]
        page, rest = rows[:limit], rows[limit:]
        token = base64.urlsafe_b64encode(json.dumps({"values": sort_values(page[-1], order)}).encode()).decode() if rest else None
        self._send(200, {"instances": page, "next_token": token, "total_instances": total, "label_counts": labels})

    def destroy(self, who, query, iid):
        cloud = self.server.cloud
        inst = self._instance_for(who, int(iid))
        if inst is None:
            self._not_found()
            return
        if cloud.faults.take("destroy_failures"):
            status = cloud.faults.destroy_failure_status
            if status == 429:
                self._send(429, "Too Many Requests", content_type="text/plain")
            else:
                self._send(status, {"success": False, "error": "internal_error", "msg": "destroy failed"})
            return
        if cloud.faults.take("destroy_ignored"):
            self._send(200, {"success": True})
            return
        cloud.destroy(
            inst.id,
            by="instance" if who.startswith("instance:") else "account",
            answer=lambda: (self._send(200, {"success": True}), self.wfile.flush()),
        )

    def _not_found(self):
        self._send(404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"})

    def _own_instances(self, who, ids) -> Optional[list]:
        """The caller's instances with these ids; None when the list is empty or any id is not theirs."""
        insts = [self._instance_for(who, int(i)) for i in ids or []]
        return insts if insts and None not in insts else None

    def _apply_state(self, iid: int, state) -> None:
        if state == "stopped":
            self.server.cloud.stop(iid)
        elif state == "running":
            self.server.cloud.start(iid)

    def update(self, who, query, iid):
        inst = self._instance_for(who, int(iid))
        body = self._body()
        if inst is None:
            self._not_found()
            return
        if "label" in body:
            if who != "account":
                self._send(401, {"success": False, "error": "auth_error", "msg": "instance keys cannot relabel"})
                return
            inst.label = str(body["label"])[:256]
        self._apply_state(inst.id, body.get("state"))
        self._send(200, {"success": True})

    def reboot(self, who, query, iid):
        self._lifecycle(who, iid, self.server.cloud.restart)

    def recycle(self, who, query, iid):
        self._lifecycle(who, iid, self.server.cloud.recycle)

    def _lifecycle(self, who, iid, action):
        self._body()
        inst = self._instance_for(who, int(iid))
        if inst is None:
            self._not_found()
            return
        action(inst.id)
        self._send(200, {"success": True})

    def bulk_update(self, who, query):
        """`vastai start/stop instances ID ...`: {"ids": [...], "state": ...}."""
        body = self._body()
        insts = self._own_instances(who, body.get("ids"))
        if insts is None or body.get("state") not in ("running", "stopped"):
            self._send(400, {"success": False, "error": "invalid_args", "msg": "ids of your instances and a state"})
            return
        for inst in insts:
            self._apply_state(inst.id, body["state"])
        self._send(200, {"success": True})

    def bulk_destroy(self, who, query):
        """`vastai destroy instances ID ...`: {"instance_ids": [...]}."""
        insts = self._own_instances(who, self._body().get("instance_ids"))
        if insts is None:
            self._send(400, {"success": False, "error": "invalid_args", "msg": "instance_ids of your instances"})
            return
        for inst in insts:
            self.server.cloud.destroy(inst.id, by="account")
        self._send(200, {"success": True})

    def request_logs(self, who, query, iid):
        cloud = self.server.cloud
        inst = self._instance_for(who, int(iid))
        if inst is None:
            self._not_found()
            return
        body = self._body()
        try:
            tail = int(body.get("tail") or LOGS_DEFAULT_TAIL)
            pattern = re.compile(str(body["filter"])) if body.get("filter") else None
        except (TypeError, ValueError, re.error) as exc:
            self._send(400, {"success": False, "error": "invalid_args", "msg": f"bad tail or filter: {exc}"})
            return
        # The container's output as bytes, as Vast returns it (whatever encoding the programs wrote)
        lines = inst.log_path.read_bytes().splitlines() if inst.log_path.exists() else []
        # As Vast: the last `tail` lines (1,000 unless asked), then the grep filter. Which of the two Vast
        # applies first is not documented; this order is the one a follower can lose more lines to.
        lines = lines[-tail:] if tail > 0 else []
        if pattern is not None:
            lines = [ln for ln in lines if pattern.search(ln.decode("utf-8", errors="replace"))]
        text = b"\n".join(lines) + b"\n" if lines else b""
        token = secrets.token_hex(12)
        self.server.log_blobs[token] = text
        self._send(200, {"success": True, "result_url": f"{cloud.public_url}/_logs/{token}", "msg": "logs requested"})

    def log_blob(self, who, query, token):
        text = self.server.log_blobs.pop(token, None)
        if text is None:
            self._send(404, "not ready", content_type="text/plain")
        else:
            self._send(200, text, content_type="text/plain")

    def invoices(self, who, query):
        cloud = self.server.cloud
        since = float(query.get("sdate") or 0)
        until = float(query["edate"]) if query.get("edate") else None
        rows = cloud.invoice_rows(since, until)
        self._send(200, {"invoices": rows, "current": {"charges": round(sum(r["amount"] for r in rows), 8)}})

    def charges_v1(self, who, query):
        """`vastai show invoices-v1 --charges`: a row per instance, its GPU and storage lines as items."""
        filters = _json_arg(query.get("select_filters")) or {}
        day = filters.get("day") or {}
        since, until = float(day.get("gte", 0)), float(day["lte"]) if "lte" in day else None
        types = (filters.get("type") or {}).get("in")
        rows = [r for r in self.server.cloud.charge_rows(since, until) if not types or r["type"] in types]
        self._send(200, _page(rows, query))

    def invoices_v1(self, who, query):
        """`vastai show invoices-v1 --invoices`: payments, transfers and credits; the local account has none."""
        _json_arg(query.get("select_filters"))
        self._send(200, _page([], query))

    # --- local control (tests, debugging) -----------------------------------------------------
    def change_bid(self, who, query, iid):
        inst = self._instance_for(who, int(iid))
        if inst is None or who != "account":
            self._not_found()
            return
        price = self._body().get("price")
        self.server.cloud.change_bid(inst.id, None if price is None else float(price))
        self._send(200, {"success": True})


def _json_arg(value):
    """Query arguments the vastai client sends as JSON text."""
    return json.loads(value) if isinstance(value, str) else value


def _page(rows: list[dict], query: dict) -> dict:
    """A v1 page: oldest first unless latest_first, `limit` rows, `next_token` to the rest."""
    rows = sorted(rows, key=lambda r: r["start"], reverse=str(query.get("latest_first")).lower() == "true")
    limit = max(1, min(int(query.get("limit") or 20), 100))
    offset = int(json.loads(base64.urlsafe_b64decode(query["after_token"]))["offset"]) if query.get("after_token") else 0
    page = rows[offset : offset + limit]
    more = offset + limit < len(rows)
    token = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode() if more else None
    return {"results": page, "count": len(page), "total": len(rows), "next_token": token}


def _validate_create(body: dict) -> Optional[str]:
    if not isinstance(body.get("image"), str) or not body["image"].strip():
        return "image is required"
    if len(body.get("image") or "") > 1024:
        return "image is longer than 1024 characters"
    if len(body.get("label") or "") > 256:
        return "label is longer than 256 characters"
    env = body.get("env") or {}
    if not isinstance(env, dict):
        return "env must be an object"
    if any(len(str(k)) + len(str(v)) > 256 for k, v in env.items()):
        return "an env entry is longer than 256 characters"
    if len(json.dumps(env)) > 32768:
        return "env is larger than 32768 characters"
    if len(body.get("onstart") or "") + len(str(body.get("args") or "")) > 4096:
        return "onstart + args is longer than 4096 characters"
    if body.get("disk") is not None and float(body["disk"]) < 8:
        return "disk must be at least 8 GB"
    if body.get("price") is not None and not (0.001 <= float(body["price"]) <= 128):
        return "invalid_price"
    return None


H = VastApi
ROUTES: list[tuple[str, str, Callable, str]] = [
    ("GET", r"/api/v0/users/current/?", H.current_user, "account"),
    ("GET", r"/api/v0/gpu_names/unique/?", H.gpu_names, "none"),
    ("POST", r"/api/v0/bundles/?", H.search, "optional"),  # on Vast offer search needs no key
    ("PUT", r"/api/v0/search/asks/?", H.search_new, "optional"),
    ("PUT", r"/api/v0/asks/(\d+)/?", H.create, "account"),
    ("PUT", r"/api/v0/launch_instance/?", H.launch_instance, "account"),
    ("PUT", r"/api/v0/instances/request_logs/(\d+)/?", H.request_logs, "account"),
    ("PUT", r"/api/v0/instances/reboot/(\d+)/?", H.reboot, "account"),
    ("PUT", r"/api/v0/instances/bid_price/(\d+)/?", H.change_bid, "account"),
    ("PUT", r"/api/v0/instances/recycle/(\d+)/?", H.recycle, "account"),
    ("PUT", r"/api/v0/instances/?", H.bulk_update, "account"),
    ("DELETE", r"/api/v0/instances/?", H.bulk_destroy, "account"),
    ("GET", r"/api/v0/instances/?", H.list_v0, "account"),
    ("GET", r"/api/v1/instances/?", H.list_v1, "account"),
    ("GET", r"/api/v0/instances/(\d+)/?", H.show, "any"),
    ("DELETE", r"/api/v0/instances/(\d+)/?", H.destroy, "any"),
    ("PUT", r"/api/v0/instances/(\d+)/?", H.update, "any"),
    ("GET", r"/_logs/([0-9a-f]+)", H.log_blob, "none"),
    ("GET", r"/api/v0/users/me/invoices/?", H.invoices, "account"),
    ("GET", r"/api/v1/invoices/?", H.invoices_v1, "account"),
    ("GET", r"/api/v0/charges/?", H.charges_v1, "account"),
    ("GET", r"/_local/events", H.local_events, "account"),
    ("GET", r"/_local/instances", H.local_instances, "account"),
    ("POST", r"/_local/faults", H.local_faults, "account"),
    ("POST", r"/_local/offers/(\d+)", H.local_offer, "account"),
    ("POST", r"/_local/instances/(\d+)/restart", H.local_restart, "account"),
    ("POST", r"/_local/instances/(\d+)/exit", H.local_exit, "account"),
    ("POST", r"/_local/instances/(\d+)/outbid", H.local_outbid, "account"),
    ("POST", r"/_local/instances/(\d+)/rival_gone", H.local_rival_gone, "account"),
    ("POST", r"/_local/instances/(\d+)/sigterm", H.local_signal, "account"),
    ("POST", r"/_local/instances/(\d+)/take_machine", H.local_take_machine, "account"),
    ("POST", r"/_local/instances/(\d+)/host_offline", H.local_host_offline, "account"),
]
