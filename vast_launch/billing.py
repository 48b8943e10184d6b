"""What a launch costs by its own timeline: Σ over state intervals of the rate that applies.

The rates are the ones stored when the instance was rented (never today's catalog price). Pure: the
ledger freezes a finished launch's estimate with it, and reports replay active ones.
"""

from __future__ import annotations

import json
import time
from typing import Optional

from .states import BILLED_GPU, BILLING, BILLING_ENDS, UNBILLED


def _rates_from(detail: Optional[str]) -> Optional[tuple[float, float]]:
    """The (GPU, storage) $/h a `creating` event recorded for the offer it rented."""
    if not detail:
        return None
    try:
        d = json.loads(detail)
    except json.JSONDecodeError:
        return None
    if not isinstance(d, dict) or d.get("dph_base") is None:
        return None
    return float(d["dph_base"] or 0.0), float(d.get("storage_dph") or 0.0)


def estimate(launch: dict, events: list[dict], now: Optional[float] = None) -> dict:
    """GPU and storage seconds and dollars of one launch, from its event timeline."""
    now = time.time() if now is None else now
    gpu_rate = float(launch.get("dph_base") or 0.0)
    storage_rate = float(launch.get("storage_dph") or 0.0)
    gpu_s = storage_s = gpu_usd = storage_usd = 0.0
    current, since = None, None

    def close(until: float) -> None:
        nonlocal gpu_s, storage_s, gpu_usd, storage_usd
        seconds = max(until - since, 0.0)
        if current in BILLED_GPU:
            gpu_s += seconds
            gpu_usd += gpu_rate * seconds / 3600
        if current not in UNBILLED:
            storage_s += seconds
            storage_usd += storage_rate * seconds / 3600

    for ev in events:
        state = ev["state"]
        if state == "creating":
            rates = _rates_from(ev.get("detail"))
            if rates is not None:
                gpu_rate, storage_rate = rates
            continue
        if state not in BILLING:
            continue
        if current is not None:
            close(ev["t"])
        current, since = (None, None) if state in BILLING_ENDS else (state, ev["t"])
    if current is not None:
        close(launch.get("ended_at") or now)
    num_gpus = int(launch.get("num_gpus") or 1)
    return {
        "gpu_seconds": gpu_s,
        "storage_seconds": storage_s,
        "gpu_usd": gpu_usd,
        "storage_usd": storage_usd,
        "cost_usd": gpu_usd + storage_usd,
        "gpu_hours": gpu_s / 3600 * num_gpus,
    }
