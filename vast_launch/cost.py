"""Cost estimates from the ledger's state intervals and the rates stored at rental time."""

from __future__ import annotations

import time
from typing import Optional

# While running the GPU and storage are billed; while the instance exists in any other state,
# storage only; offline instances are not billed.
GPU_STATES = {"running"}
STORAGE_ONLY_STATES = {"loading", "created", "stopped", "exited", "frozen", "rebooting", "unknown"}
UNBILLED_STATES = {"offline"}
END_STATES = {"destroyed", "failed", "aborted", "cancelled", "completed", "gone"}


def estimate(launch: dict, events: list[dict], now: Optional[float] = None) -> dict:
    """Σ over state intervals of the rate that applies; today's prices are never looked up."""
    now = time.time() if now is None else now
    gpu_rate = float(launch.get("dph_base") or 0.0)
    storage_rate = float(launch.get("storage_dph") or 0.0)
    gpu_s = storage_s = 0.0
    current, since = None, None
    for ev in events:
        state = ev["state"]
        if state not in GPU_STATES | STORAGE_ONLY_STATES | UNBILLED_STATES | END_STATES:
            continue
        if current is not None:
            seconds = ev["t"] - since
            if current in GPU_STATES:
                gpu_s += seconds
            if current not in UNBILLED_STATES:
                storage_s += seconds
        current, since = (None, None) if state in END_STATES else (state, ev["t"])
    if current is not None:
        seconds = (launch.get("ended_at") or now) - since
        if current in GPU_STATES:
            gpu_s += seconds
        if current not in UNBILLED_STATES:
            storage_s += seconds
    gpu_usd = gpu_rate * gpu_s / 3600
    storage_usd = storage_rate * storage_s / 3600
    num_gpus = int(launch.get("num_gpus") or 1)
    return {"gpu_seconds": gpu_s, "storage_seconds": storage_s, "gpu_usd": gpu_usd,
            "storage_usd": storage_usd, "cost_usd": gpu_usd + storage_usd,
            "gpu_hours": gpu_s / 3600 * num_gpus}
