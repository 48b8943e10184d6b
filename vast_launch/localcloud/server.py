"""The local cloud as one object: its HTTP server on a port, and the cloud behind it."""

from __future__ import annotations

import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .api import ROUTES, VastApi
from .cloud import Cloud
from .http import Server
from .offers import default_offers


class LocalCloud:
    """Start with `with LocalCloud() as lc:`; `lc.url` and `lc.api_key` are what a client needs."""

    def __init__(
        self,
        root: Optional[str | Path] = None,
        port: int = 0,
        host: str = "127.0.0.1",
        api_key: Optional[str] = None,
        offers: Optional[list[dict]] = None,
        price_dph: float = 0.0,
        loading_seconds: float = 0.3,
        ssh_port: Optional[int] = None,
        rentals_per_offer: int = 4,
        hidden_paths: tuple = (),
        keep_destroyed: bool = True,
    ):
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vast-localcloud-")
            root = self._tmp.name
        self.api_key = api_key or "local-" + secrets.token_hex(16)
        self.httpd = Server((host, port), VastApi)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.cloud = Cloud(
            Path(root),
            self.api_key,
            offers=offers if offers is not None else default_offers(price_dph),
            loading_seconds=loading_seconds,
            public_url=self.url,
            ssh_port=ssh_port,
            rentals_per_offer=rentals_per_offer,
            hidden_paths=hidden_paths,
            keep_destroyed=keep_destroyed,
        )
        self.httpd.cloud = self.cloud
        self.httpd.routes = [(v, re.compile(p), fn, needs) for v, p, fn, needs in ROUTES]
        self.httpd.log_blobs = {}
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "LocalCloud":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="localcloud")
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
