"""The local cloud's HTTP plumbing: bodies, keys, routes and JSON answers; the routes are in api.py."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from .cloud import Cloud

MAX_BODY_BYTES = 4 * 1024 * 1024


class Plumbing(BaseHTTPRequestHandler):
    """Reading requests, authenticating their key as Vast does, routing, and answering in JSON."""

    server: "Server"
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
        query_key = query.pop("api_key", None)
        key = auth[7:] if auth.startswith("Bearer ") else query_key
        how = "bearer" if auth.startswith("Bearer ") else "api_key query" if query_key else "none"
        who = cloud.who(key)
        self._status = 0
        try:
            problem = self._read_body()
            if problem == "too_large":
                self._send(
                    413, {"success": False, "error": "request_too_large", "msg": f"bodies are limited to {MAX_BODY_BYTES} bytes"}
                )
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
            cloud.record(method=method, path=path, status=self._status, who=who or "anonymous", auth=how)

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


class Server(ThreadingHTTPServer):
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
