"""The one interface the launcher uses to talk to a GPU cloud."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

from ..errors import LaunchError
from ..protocol import EXIT_NOT_DESTROYED
from ..targets.base import Instance


class ProviderError(LaunchError):
    """The cloud refused or could not be reached; `status`/`error` are what it answered."""

    def __init__(self, message: str, status: Optional[int] = None, error: Optional[str] = None, body: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.body = body or {}


class Unreachable(ProviderError):
    """The cloud did not answer at all (connection refused, DNS, timeout): asking about other instances is
    no use either."""


class DestroyUnconfirmed(ProviderError):
    """A destroy the cloud acknowledged (or refused) but the instance is still there after every retry: it
    may still be running and billing. Its row stays open for `vast-launch reap`."""

    exit_code = EXIT_NOT_DESTROYED


class AuthRejected(ProviderError):
    """The service refused the key (Vast answers an unknown or revoked key with 404 auth_error)."""


class OfferGone(ProviderError):
    """The offer was rented by someone else between search and create."""


class CreateFailed(ProviderError):
    """Create errored. `contract_id` is set when an instance was created anyway: destroy it."""

    @property
    def contract_id(self) -> Optional[int]:
        cid = self.body.get("new_contract")
        return int(cid) if cid else None


@dataclass
class Created:
    instance_id: int


class Provider(Protocol):
    url: str

    def search(self, query: dict, order: list, offer_type: str, storage_gb: float, limit: int) -> list[dict]: ...

    def create(self, offer_id: int, payload: dict) -> Created: ...

    def show(self, instance_id: int) -> Optional[Instance]: ...

    def list(self, label_prefix: Optional[str] = None) -> list[Instance]: ...

    def destroy(self, instance_id: int) -> bool: ...

    def label(self, instance_id: int, label: str) -> None: ...

    def logs(self, instance_id: int, tail: Optional[int] = None, filter: Optional[str] = None) -> str: ...

    def invoices(self, since: float, until: float) -> list[dict]: ...
