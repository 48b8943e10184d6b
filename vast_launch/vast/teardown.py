"""Destroy an instance and record it, once: used by the launcher, `down` and the reaper.

The ledger gets `destroying` only together with the outcome: a confirmed destroy ends the launch
(or records the instance gone), a failed one is recorded as `destroy_failed` and raised.
"""

from __future__ import annotations

from typing import Optional

from ..ledger import Ledger
from ..protocol import LABEL_PREFIX, launch_id_of
from ..targets.base import Instance
from .provider import Provider, ProviderError


def destroy_and_record(
    provider: Provider,
    ledger: Optional[Ledger],
    launch_id: Optional[str],
    iid: int,
    reason: str,
    final: bool = True,
    state: str = "destroyed",
) -> bool:
    """Destroy `iid` and confirm it is gone. True if it existed. Raises ProviderError on failure."""
    row = ledger.get(launch_id) if ledger is not None and launch_id else None
    try:
        existed = provider.destroy(iid)
    except ProviderError as exc:
        if row is not None:
            ledger.event(launch_id, "destroy_failed", {"instance_id": iid, "reason": reason, "error": str(exc)}, set_state=False)
        raise
    if row is not None:
        ledger.event(launch_id, "destroying", {"instance_id": iid, "reason": reason, "existed": existed}, set_state=False)
        if final:
            ledger.finish(launch_id, state, reason)
        else:
            ledger.event(launch_id, "gone", {"instance_id": iid, "reason": reason}, set_state=False)
    return existed


def instances_by_label(provider: Provider, launch_id: str) -> list[Instance]:
    """Instances carrying this launch's label (a launcher killed mid-create left no id)."""
    return [i for i in provider.list(label_prefix=LABEL_PREFIX) if launch_id_of(i.label) == launch_id]
