"""The provider interface over the real `vastai` SDK, with bounded tenacity retries.

Retried: 429, 5xx and connection errors, with exponential backoff and jitter, bounded in
attempts and total time. Never retried: 4xx validation errors. Create is only retried when
the request cannot have created anything (429, connection refused).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional, TypeVar
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential, wait_random
from vastai.api import instances, offers
from vastai.api.client import VastClient

from ..errors import UserError, network_cause
from ..targets.base import Instance
from .instances import instance_of
from .provider import AuthRejected, Created, CreateFailed, DestroyUnconfirmed, OfferGone, ProviderError, Unreachable

T = TypeVar("T")
DEFAULT_URL = "https://console.vast.ai"
RETRY_STATUS = {429, 500, 502, 503, 504}


def _status(exc: BaseException) -> Optional[int]:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, requests.HTTPError) and _status(exc) in RETRY_STATUS


def _safe_to_resend_create(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        return True
    return isinstance(exc, requests.HTTPError) and _status(exc) == 429


def _is_html(resp) -> bool:
    kind = (getattr(resp, "headers", None) or {}).get("Content-Type", "")
    return "html" in kind or (getattr(resp, "text", "") or "").lstrip()[:1] == "<"


def _body(exc: requests.HTTPError) -> dict:
    try:
        data = exc.response.json()
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


class VastProvider:
    def __init__(
        self,
        api_key: str,
        url: Optional[str] = None,
        attempts: int = 6,
        max_seconds: float = 90,
        initial_wait: float = 0.2,
        on_retry: Optional[Callable[[str], None]] = None,
        timeout: float = 60,
    ):
        if not api_key or not api_key.strip():
            raise UserError("no Vast API key: set VAST_API_KEY or run `vastai set api-key KEY`")
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in api_key):
            raise UserError("the Vast API key holds a space, newline or control character (a copy-paste left it?): set it again")
        self.url = (url or os.environ.get("VAST_URL") or DEFAULT_URL).rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in self.url):
            raise UserError(f"VAST_URL {self.url!r}: expected http(s)://host[:port], e.g. {DEFAULT_URL}")
        # The SDK's own retry loop is turned off (1 attempt): tenacity below owns retries.
        self.client = VastClient(api_key=api_key, server_url=self.url, retry=1, timeout=timeout)
        self.attempts, self.max_seconds, self.initial_wait = attempts, max_seconds, initial_wait
        self.on_retry = on_retry
        self.retries = 0

    def _call(self, what: str, fn: Callable[[], T], retry_on: Callable[[BaseException], bool] = _transient) -> T:
        def before_sleep(state) -> None:
            self.retries += 1
            if self.on_retry:
                exc = state.outcome.exception()
                why = _status(exc) or network_cause(exc)
                self.on_retry(f"{what}: {why}, retry {state.attempt_number}")

        retrying = Retrying(
            retry=retry_if_exception(retry_on),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=wait_exponential(multiplier=self.initial_wait, max=10) + wait_random(0, self.initial_wait),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except requests.HTTPError as exc:
            if _is_html(exc.response):
                raise ProviderError(f"{self.url} answered a web page, not the Vast API (HTTP {_status(exc)}, {what}): check VAST_URL")
            body = _body(exc)
            if body.get("error") == "auth_error":  # before any 404 handling: it means the key, not the thing
                raise AuthRejected(
                    f"Vast rejected the API key (HTTP {_status(exc)} auth_error, {what}): check "
                    "VAST_API_KEY or run `vastai set api-key KEY`",
                    _status(exc),
                    "auth_error",
                    body,
                )
            msg = body.get("msg") or body.get("error") or exc.response.text[:200]
            raise ProviderError(f"{what} failed: HTTP {_status(exc)}: {msg}", _status(exc), body.get("error"), body)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unreachable(f"cannot reach {self.url}: {network_cause(exc)} ({what})")
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:  # an answer not shaped as Vast's
            raise ProviderError(
                f"{self.url} answered something that is not the Vast API ({what}, {type(exc).__name__}): check VAST_URL"
            )
        except requests.RequestException as exc:  # a URL requests cannot use, a header it refuses
            raise ProviderError(f"{self.url}: {type(exc).__name__}: {exc} ({what})")

    def search(self, query: dict, order: list, offer_type: str, storage_gb: float, limit: int = 64) -> list[dict]:
        return self._call(
            "search offers",
            lambda: offers.search_offers(
                self.client, query=dict(query), offer_type=offer_type, order=order, limit=limit, storage=storage_gb
            ),
        )

    def create(self, offer_id: int, payload: dict) -> Created:
        try:
            answer = self._call(
                f"create on offer {offer_id}",
                lambda: instances.create_instance_from_payload(self.client, offer_id, dict(payload)),
                retry_on=_safe_to_resend_create,
            )
        except AuthRejected:
            raise
        except ProviderError as exc:
            if exc.status in (404, 410) or exc.error == "no_such_ask":
                raise OfferGone(str(exc), exc.status, exc.error, exc.body)
            raise CreateFailed(str(exc), exc.status, exc.error, exc.body)
        if not answer.get("success") or not answer.get("new_contract"):
            raise CreateFailed(f"create on offer {offer_id} answered {answer.get('msg') or 'no contract'}", body=answer)
        return Created(instance_id=int(answer["new_contract"]))

    def show(self, instance_id: int) -> Optional[Instance]:
        return instance_of(self._call(f"show instance {instance_id}", lambda: instances.show_instance(self.client, instance_id)))

    def list(self, label_prefix: Optional[str] = None) -> list[Instance]:
        rows = [instance_of(r) for r in self._call("list instances", lambda: instances.show_instances(self.client))]
        return [r for r in rows if r.label.startswith(label_prefix or "")]

    def destroy(self, instance_id: int, confirm_seconds: float = 30, attempts: int = 4) -> bool:
        """Destroy and confirm it is gone; False when it was already gone. Vast can acknowledge a DELETE and
        lose it: the DELETE is sent again (with backoff) until the instance is gone, at most `attempts`
        times; then DestroyUnconfirmed."""
        existed = True
        for attempt in range(1, attempts + 1):
            try:
                self._call(f"destroy instance {instance_id}", lambda: instances.destroy_instance(self.client, instance_id))
            except ProviderError as exc:
                if exc.status != 404 or isinstance(exc, AuthRejected):
                    if attempt == attempts or isinstance(exc, AuthRejected):
                        raise
                elif attempt == 1:
                    existed = False
            deadline = time.time() + confirm_seconds / attempts
            while self.show(instance_id) is not None:
                if time.time() > deadline:
                    break
                time.sleep(0.25)
            else:
                return existed
            if self.on_retry:
                self.on_retry(f"destroy instance {instance_id}: still there, DELETE again ({attempt + 1}/{attempts})")
            time.sleep(min(0.5 * 2**attempt, 4.0))
        raise DestroyUnconfirmed(
            f"instance {instance_id} still exists after {attempts} destroys over {confirm_seconds:.0f} s: it may still be "
            "running and billing; `vast-launch reap` (or the Vast console) ends it"
        )

    def label(self, instance_id: int, label: str) -> None:
        self._call(f"label instance {instance_id}", lambda: instances.label_instance(self.client, instance_id, label))

    def logs(self, instance_id: int, tail: Optional[int] = None, filter: Optional[str] = None) -> str:
        """The SDK's request (the last 1,000 lines unless `tail`; `filter` greps); the result URL is polled
        from 50 ms up (the SDK's helper sleeps 0.3 s first, which a follower waiting on a result line pays
        on every fetch)."""
        body = {**({"tail": str(tail)} if tail else {}), **({"filter": filter} if filter else {})}

        def fetch() -> str:
            r = self.client.put(f"/instances/request_logs/{instance_id}/", json_data=body)
            r.raise_for_status()
            url = r.json().get("result_url")
            if not url:
                return ""
            delay, deadline = 0.05, time.time() + 10
            while time.time() < deadline:
                got = requests.get(url, timeout=10)
                if got.status_code == 200:
                    # The container's bytes, as written: UTF-8 (requests would guess latin-1 for text/plain)
                    return got.content.decode("utf-8", errors="replace")
                time.sleep(delay)
                delay = min(delay * 2, 0.3)
            raise TimeoutError(f"logs of instance {instance_id} not ready after 10 s")

        return self._call(f"logs of instance {instance_id}", fetch)

    def invoices(self, since: float, until: float) -> list[dict]:
        def fetch():
            r = self.client.get("/users/me/invoices", query_args={"owner": "me", "sdate": since, "edate": until, "inc_charges": True})
            r.raise_for_status()
            return r.json().get("invoices") or []

        return self._call("invoices", fetch)

    def local_control(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        """Only the local cloud answers these (tests, fault injection)."""
        r = self.client._request(method, self.url + path, self.client._build_headers(), body)
        r.raise_for_status()
        return r.json()
