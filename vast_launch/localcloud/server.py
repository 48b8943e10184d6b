"""HTTP face of the local cloud: the subset of the Vast REST API that the `vastai` client uses.

See shared/reference/vast-api.md. Control endpoints for tests live under /_local/.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from .cloud import Cloud, default_offers, priced_offer

SEARCH_CONTROL_KEYS = {"order", "type", "allocated_storage", "limit", "disable_bundling"}


def _coerce(value, like):
    """Query values arrive as strings from the CLI; compare them as the offer field's type."""
    if isinstance(like, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1")
    if isinstance(like, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if isinstance(like, str) and isinstance(value, str):
        return value.replace("_", " ")
    return value


def country_code(geolocation):
    """Vast's offers carry "Region, CC" and its search compares the two-letter country code."""
    return geolocation.rsplit(",", 1)[-1].strip() if isinstance(geolocation, str) else geolocation


def matches(row: dict, query: dict) -> bool:
    for key, cond in query.items():
        if key in SEARCH_CONTROL_KEYS or not isinstance(cond, dict):
            continue
        have = country_code(row.get(key)) if key == "geolocation" else row.get(key)
        for op, want in cond.items():
            if op in ("in", "notin"):
                wants = [_coerce(w, have) for w in (want or [])]
                ok = (have in wants) if op == "in" else (have not in wants)
            else:
                w = _coerce(want, have)
                try:
                    ok = {
                        "eq": lambda: have == w, "neq": lambda: have != w,
                        "gt": lambda: have > w, "gte": lambda: have >= w,
                        "lt": lambda: have < w, "lte": lambda: have <= w,
                    }[op]()
                except KeyError:
                    ok = True  # unknown operators are ignored, as the real service tolerates extras
                except TypeError:
                    ok = False
            if not ok:
                return False
    return True


SORT_ALIASES = {"dlperf_usd": "dlperf_per_dphtotal", "dph": "dph_total"}


def _sort_key(v):
    return (v is None, v if v is not None else 0)


def sort_rows(rows: list[dict], order) -> list[dict]:
    for col, direction in reversed(order or []):
        col = SORT_ALIASES.get(col, col)
        rows.sort(key=lambda r: _sort_key(r.get(col)), reverse=(direction == "desc"))
    return rows


def _sort_values(row: dict, order) -> list:
    return [row.get(SORT_ALIASES.get(c, c)) for c, _ in order]


def _comes_after(values: list, token: list, order) -> bool:
    """Keyset pagination, as Vast's v1 list does (its next_token holds the last row's sort values): a
    row belongs to the next pages when it sorts after the token's row; rows that vanished meanwhile
    cannot shift the pages, in either order."""
    for v, t, (_, direction) in zip(values, token, order):
        kv, kt = _sort_key(v), _sort_key(t)
        if kv != kt:
            return kv < kt if direction == "desc" else kv > kt
    return False


MAX_BODY_BYTES = 4 * 1024 * 1024
LOGS_DEFAULT_TAIL = 1000  # the logs API's default (vastai CLI: "--tail ... (default '1000')")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    # --- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, payload, content_type: str = "application/json", headers=None) -> None:
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self._status = status

    def _body(self) -> dict:
        return self._json

    def _read_body(self) -> Optional[str]:
        """Reads every request's body (an unread one corrupts the next request on a keep-alive
        connection); an error message when it is too large or not a JSON object."""
        self._json: dict = {}
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return "bad Content-Length"
        if n > MAX_BODY_BYTES:
            self.close_connection = True  # not read: the connection cannot be reused
            return "too_large"
        raw = self.rfile.read(n) if n > 0 else b""
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"malformed JSON body: {exc}"
        if not isinstance(data, dict):
            return f"the body must be a JSON object, not {type(data).__name__}"
        self._json = data
        return None

    def _dispatch(self, method: str) -> None:
        cloud = self.server.cloud
        parts = urlsplit(self.path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        auth = self.headers.get("Authorization", "")
        # Bearer header (SDK and CLI 1.x); older clients send ?api_key= instead.
        key = auth[7:] if auth.startswith("Bearer ") else query.pop("api_key", None)
        who = cloud.who(key)
        self._status = 0
        try:
            problem = self._read_body()
            if problem == "too_large":
                self._send(413, {"success": False, "error": "request_too_large",
                                 "msg": f"bodies are limited to {MAX_BODY_BYTES} bytes"})
                return
            if cloud.faults.take_rate_limit(path):
                self._send(429, "Too Many Requests", content_type="text/plain")
                return
            for verb, pattern, fn, needs in self.server.routes:
                m = pattern.fullmatch(path)
                if verb == method and m:
                    if key and who is None and needs != "none":
                        # As the real service: an unknown or revoked key is a 404, not a 401.
                        self._send(404, {"success": False, "error": "auth_error", "msg": "Invalid user key"})
                    elif needs == "account" and who != "account":
                        self._send(401, {"error": "auth_error", "msg": "invalid or missing API key"})
                    elif needs == "optional" and key is not None and who != "account":
                        self._send(401, {"error": "auth_error", "msg": "invalid API key"})
                    elif needs == "any" and who is None:
                        self._send(401, {"error": "auth_error", "msg": "invalid or missing API key"})
                    elif problem and method in ("PUT", "POST"):  # a GET's or DELETE's body is ignored
                        self._send(400, {"success": False, "error": "invalid_request", "msg": problem})
                    else:
                        self._call(fn, who, query, m.groups())
                    return
            self._send(404, {"error": "not_found", "msg": f"no route {method} {path}"})
        finally:
            cloud.record(method=method, path=path, status=self._status, who=who or "anonymous")

    def _call(self, fn, who, query, groups) -> None:
        """A bad parameter is the client's error: 400 with a JSON body, never a dropped connection."""
        try:
            fn(self, who, query, *groups)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if self._status:
                raise
            self._send(400, {"success": False, "error": "invalid_args", "msg": f"bad parameter: {exc}"})
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # a server bug still answers, in JSON, so clients do not retry blind
            if self._status:
                raise
            self._send(500, {"success": False, "error": "server_error", "msg": f"{type(exc).__name__}: {exc}"})

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # --- API ----------------------------------------------------------------------------------
    def current_user(self, who, query):
        self._send(200, {"id": 1, "username": "local", "email": "local@localhost", "credit": 1000.0,
                         "balance": 0.0, "can_pay": True, "ssh_key": ""})

    def gpu_names(self, who, query):
        names = sorted({o["gpu_name"] for o in self.server.cloud.offers.values()} | {"RTX 4090", "RTX 3090"})
        self._send(200, {"gpu_names": names})

    def search(self, who, query, q: Optional[dict] = None):
        cloud = self.server.cloud
        q = q if q is not None else self._body()
        storage = float(q.get("allocated_storage") or 5.0)
        with cloud.lock:
            rows = [priced_offer(o, storage) for o in cloud.offers.values()]
        rows = sort_rows([r for r in rows if matches(r, q)], q.get("order"))
        if q.get("limit"):
            rows = rows[: int(q["limit"])]
        self._send(200, {"offers": rows})

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
            exists = oid in cloud.offers and not cloud.offers[oid].get("rented")
        if not exists:
            self._send(404, {"success": False, "error": "no_such_ask", "msg": f"Instance type {oid} is no longer available."})
            return
        problem = _validate_create(body)
        if problem:
            self._send(400, {"success": False, "error": "invalid_args", "msg": problem})
            return
        inst = cloud.create(oid, body)
        if cloud.faults.take("create_error_but_creates"):
            self._send(500, {"success": False, "error": "internal_error", "msg": "create timed out",
                             "new_contract": inst.id})
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
        self._send(410, {"error": "gone", "msg": "use /api/v1/instances/"})

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
            rows = [r for r in rows if _comes_after(_sort_values(r, order), after, order)]
        page, rest = rows[:limit], rows[limit:]
        token = base64.urlsafe_b64encode(json.dumps({"values": _sort_values(page[-1], order)}).encode()).decode() \
            if rest else None
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
        cloud.destroy(inst.id, by="instance" if who.startswith("instance:") else "account",
                      answer=lambda: (self._send(200, {"success": True}), self.wfile.flush()))

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
        lines = inst.log_path.read_text(errors="replace").splitlines() if inst.log_path.exists() else []
        # As Vast: the last `tail` lines (1,000 unless asked), then the grep filter. Which of the two Vast
        # applies first is not documented; this order is the one a follower can lose more lines to.
        lines = lines[-tail:] if tail > 0 else []
        if pattern is not None:
            lines = [ln for ln in lines if pattern.search(ln)]
        text = "\n".join(lines) + "\n" if lines else ""
        token = secrets.token_hex(12)
        self.server.log_blobs[token] = text
        self._send(200, {"success": True, "result_url": f"{cloud.public_url}/_logs/{token}",
                         "msg": "logs requested"})

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
        rows = self.server.cloud.invoice_rows()
        self._send(200, {"results": rows, "count": len(rows), "total": sum(r["amount"] for r in rows),
                         "next_token": None})

    # --- local control (tests, debugging) -----------------------------------------------------
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

    def local_exit(self, who, query, iid):
        self.server.cloud.mark_exited(int(iid))
        self._send(200, {"success": True})

    def local_signal(self, who, query, iid):
        self.server.cloud.signal_group(int(iid))
        self._send(200, {"success": True})


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


H = _Handler
ROUTES: list[tuple[str, str, Callable, str]] = [
    ("GET", r"/api/v0/users/current/?", H.current_user, "account"),
    ("GET", r"/api/v0/gpu_names/unique/?", H.gpu_names, "none"),
    ("POST", r"/api/v0/bundles/?", H.search, "optional"),  # on Vast offer search needs no key
    ("PUT", r"/api/v0/search/asks/?", H.search_new, "optional"),
    ("PUT", r"/api/v0/asks/(\d+)/?", H.create, "account"),
    ("PUT", r"/api/v0/instances/request_logs/(\d+)/?", H.request_logs, "account"),
    ("PUT", r"/api/v0/instances/reboot/(\d+)/?", H.reboot, "account"),
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
    ("GET", r"/api/v1/invoices/?", H.charges_v1, "account"),
    ("GET", r"/api/v0/charges/?", H.charges_v1, "account"),
    ("GET", r"/_local/events", H.local_events, "account"),
    ("GET", r"/_local/instances", H.local_instances, "account"),
    ("POST", r"/_local/faults", H.local_faults, "account"),
    ("POST", r"/_local/offers/(\d+)", H.local_offer, "account"),
    ("POST", r"/_local/instances/(\d+)/restart", H.local_restart, "account"),
    ("POST", r"/_local/instances/(\d+)/exit", H.local_exit, "account"),
    ("POST", r"/_local/instances/(\d+)/sigterm", H.local_signal, "account"),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    cloud: Cloud
    routes: list
    log_blobs: dict

    def handle_error(self, request, client_address) -> None:
        """A client that went away (a destroyed container's last request) is no server error."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class LocalCloud:
    """Start with `with LocalCloud() as lc:`; `lc.url` and `lc.api_key` are what a client needs."""

    def __init__(self, root: Optional[str | Path] = None, port: int = 0, host: str = "127.0.0.1",
                 api_key: Optional[str] = None, offers: Optional[list[dict]] = None,
                 price_dph: float = 0.0, loading_seconds: float = 0.3, ssh_port: Optional[int] = None):
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vast-localcloud-")
            root = self._tmp.name
        self.api_key = api_key or "local-" + secrets.token_hex(16)
        self.httpd = _Server((host, port), _Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.cloud = Cloud(Path(root), self.api_key,
                           offers=offers if offers is not None else default_offers(price_dph),
                           loading_seconds=loading_seconds, public_url=self.url, ssh_port=ssh_port)
        self.httpd.cloud = self.cloud
        self.httpd.routes = [(v, re.compile(p), fn, needs) for v, p, fn, needs in ROUTES]
        self.httpd.log_blobs = {}
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "LocalCloud":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="localcloud")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def close(self) -> None:
        self.cloud.shutdown()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_until(self, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()
