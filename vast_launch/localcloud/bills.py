"""The local cloud's bills: per-second GPU and storage charges of its instances, as Vast's invoice (v0)
and charges (v1) endpoints show them."""

from __future__ import annotations

import time
from typing import Optional

from .instance import Instance


def invoice_rows(instances: list[Instance], since: float = 0.0, until: Optional[float] = None) -> list[dict]:
    """The v0 invoices: a GPU and a storage line per instance billed in the window."""
    until = time.time() if until is None else until
    rows = []
    for inst in instances:
        if inst.created_at > until or (inst.ended_at is not None and inst.ended_at < since):
            continue
        c = inst.charges()
        for kind, seconds, rate, amount in (
            ("gpu", c["gpu_seconds"], inst.gpu_dph, c["gpu_usd"]),
            ("storage", c["storage_seconds"], inst.storage_dph, c["storage_usd"]),
        ):
            rows.append(
                {
                    "description": f"Instance {inst.id} {kind} ({inst.offer['gpu_name']})",
                    "quantity": round(seconds / 3600, 8),
                    "rate": rate,
                    "amount": round(amount, 8),
                    "timestamp": inst.ended_at or time.time(),
                    "type": "charge",
                    "instance_id": inst.id,
                    "charge_kind": kind,
                    "seconds": seconds,
                }
            )
    return rows


def charge_rows(instances: list[Instance], since: float = 0.0, until: Optional[float] = None) -> list[dict]:
    """Charges as the v1 API shows them: a row per instance with its GPU and storage lines as items."""
    by_id = {inst.id: inst for inst in instances}
    rows: dict[int, dict] = {}
    for line in invoice_rows(instances, since, until):
        inst = by_id[line["instance_id"]]
        end = inst.ended_at or time.time()
        row = rows.setdefault(
            inst.id,
            {
                "type": "instance",
                "source": f"instance-{inst.id}",
                "start": inst.created_at,
                "end": end,
                "amount": 0.0,
                "description": f"Instance {inst.id} ({inst.offer['gpu_name']})",
                "metadata": {"instance_id": inst.id},
                "items": [],
            },
        )
        row["amount"] = round(row["amount"] + line["amount"], 8)
        row["items"].append(
            {
                "type": line["charge_kind"],
                "source": None,
                "start": inst.created_at,
                "end": end,
                "amount": line["amount"],
                "description": line["description"],
                "metadata": {"quantity_hours": line["quantity"], "rate": line["rate"]},
                "items": [],
            }
        )
    return list(rows.values())
