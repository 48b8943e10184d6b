"""Vast's instance rows and offers as the launcher's typed, provider-neutral ones: the one place that knows
Vast's `actual_status` names and the fields its rows carry."""

from __future__ import annotations

from typing import Optional

from .. import states
from ..targets.base import Instance, Offer

# Vast's `actual_status` onto the neutral statuses. A status Vast adds later reads as unknown (its storage
# billed) until it is named here.
VAST_STATUS = {
    None: states.PENDING,
    "created": states.PENDING,
    "loading": states.PENDING,
    "rebooting": states.PENDING,
    "running": states.RUNNING,
    "stopped": states.STOPPED,
    "frozen": states.STOPPED,
    "exited": states.EXITED,
    "unknown": states.UNKNOWN,
    "offline": states.OFFLINE,
}


def instance_of(row: Optional[dict]) -> Optional[Instance]:
    """A Vast instance row (`show instance`, the v1 list) as an Instance; None for none."""
    if row is None:
        return None
    ssh = (str(row["ssh_host"]), int(row["ssh_port"])) if row.get("ssh_host") and row.get("ssh_port") else None
    return Instance(
        id=int(row["id"]),
        status=VAST_STATUS.get(row.get("actual_status"), states.UNKNOWN),
        label=str(row.get("label") or ""),
        dph_total=float(row.get("dph_total") or 0),
        gpu_name=row.get("gpu_name"),
        started_at=float(row["start_date"]) if row.get("start_date") else None,
        ssh=ssh,
        env=_env_of(row.get("extra_env")),
        raw=row,
    )


def _env_of(extra_env) -> dict:
    """Vast shows an instance's env as [[key, value], ...] (or a mapping)."""
    if isinstance(extra_env, dict):
        return {str(k): str(v) for k, v in extra_env.items()}
    pairs = (p for p in extra_env or () if isinstance(p, (list, tuple)) and len(p) == 2)
    return {str(k): str(v) for k, v in pairs}


def offer_of(row: dict) -> Offer:
    return Offer(
        id=int(row["id"]),
        gpu_name=row.get("gpu_name"),
        num_gpus=int(row.get("num_gpus") or 0),
        dph_total=float(row.get("dph_total") or 0),
        reliability=float(row.get("reliability2", row.get("reliability")) or 0),
        raw=row,
    )
