"""What a launch costs by its own timeline: Σ over state intervals of the rate that applies.

The rates are the ones stored when the instance was rented (never today's catalog price). Pure: the
ledger freezes a finished launch's estimate with it, and reports replay active ones.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Optional

from .states import BILLED_GPU, BILLING, BILLING_ENDS, UNBILLED

OUTSIDE_STAGES = "(outside stages)"


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


def stage_split(launch: dict, stages: list[dict]) -> dict[str, float]:
    """Split one launch's cost over its stages; the rest (setup, loading, teardown) goes to OUTSIDE_STAGES.

    A stage costs its wall time at the all-in rate. The parts always add up to the launch's cost:
    if clock skew makes the stages longer than the launch, they are scaled down to fit.
    """
    total = launch["cost_usd"] or 0.0
    rate_dph = float(launch["dph_total"] or 0.0)
    parts: dict[str, float] = defaultdict(float)
    for st in stages:
        end = st["end"] if st["end"] is not None else (launch["ended_at"] or time.time())
        parts[st["name"]] += max(end - st["start"], 0.0) * rate_dph / 3600
    inside = sum(parts.values())
    if inside > total and inside > 0:
        scale = total / inside
        parts = defaultdict(float, {k: v * scale for k, v in parts.items()})
        inside = total
    parts[OUTSIDE_STAGES] += total - inside
    return parts


def stage_parts(launch: dict, stages: list[dict]) -> list[tuple[str, float, float]]:
    """(stage, dollars, share of the launch in 0..1). A launch that cost nothing (a free local cloud) is
    shared by wall time, so its GPU hours still go to the stages that used them."""
    total = launch["cost_usd"]
    if total:
        return [(name, usd, usd / total) for name, usd in stage_split(launch, stages).items()]
    seconds = stage_split({**launch, "cost_usd": launch_seconds(launch), "dph_total": 3600.0}, stages)
    whole = sum(seconds.values())
    return [(name, 0.0, s / whole if whole else float(name == OUTSIDE_STAGES)) for name, s in seconds.items()]


def launch_seconds(launch: dict) -> float:
    return max((launch["ended_at"] or time.time()) - launch["created_at"], 0.0)
