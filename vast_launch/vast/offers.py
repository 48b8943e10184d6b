"""Build the Vast offer query from `resources` and rank what comes back, explaining the choice."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Resources

# Filters that describe a GPU; the local cloud rents out this machine, so they do not apply there.
GPU_FILTERS = ("gpu_name", "num_gpus", "gpu_ram", "cuda_max_good", "disk_space")


def build_query(res: Resources, local: bool = False) -> tuple[dict, list, str]:
    q: dict = {"verified": {"eq": res.verified}, "rentable": {"eq": True}, "external": {"eq": False}, "rented": {"eq": False}}
    names = [n.replace("_", " ") for n in res.gpu_names]
    if len(names) == 1:
        q["gpu_name"] = {"eq": names[0]}
    elif names:
        q["gpu_name"] = {"in": names}
    q["num_gpus"] = {"eq": res.num_gpus}
    if res.min_gpu_ram_gb:
        q["gpu_ram"] = {"gte": res.min_gpu_ram_gb * 1000}  # the API counts MB
    q["disk_space"] = {"gte": res.disk_gb}
    if res.max_dph is not None:
        q["dph_total"] = {"lte": res.max_dph}
    if res.min_reliability:
        q["reliability"] = {"gte": res.min_reliability}
    if res.min_cuda is not None:
        q["cuda_max_good"] = {"gte": res.min_cuda}
    if res.min_duration_hours:
        q["duration"] = {"gte": res.min_duration_hours * 3600}
    if res.interruptible and res.bid_price is not None:
        q["min_bid"] = {"lte": res.bid_price}  # a bid under the machine's floor never runs
    if res.regions:
        q["geolocation"] = {"in": list(res.regions)}
    if local:  # this machine: whatever GPUs it has (or none), wherever it is
        for key in (*GPU_FILTERS, "geolocation"):
            q.pop(key, None)
    order = [["dph_total", "asc"]] if res.rank_by == "price" else [["dlperf_per_dphtotal", "desc"]]
    offer_type = "bid" if res.interruptible else "on-demand"
    return q, order, offer_type


@dataclass
class RankedOffer:
    offer: dict
    rank: int
    reason: str

    @property
    def id(self) -> int:
        return int(self.offer["id"])

    @property
    def dph(self) -> float:
        return float(self.offer.get("dph_total") or 0.0)


def _perf_per_dollar(o: dict) -> float:
    dph = float(o.get("dph_total") or 0)
    return float(o.get("dlperf") or 0) / dph if dph > 0 else float("inf")


def rank_offers(found: list[dict], res: Resources) -> list[RankedOffer]:
    """Rank explicitly on our side: the server's order is a hint, not a contract."""
    if res.rank_by == "price":
        ordered = sorted(found, key=lambda o: (float(o.get("dph_total") or 0), -float(o.get("reliability") or 0)))
    else:
        ordered = sorted(found, key=lambda o: (-_perf_per_dollar(o), float(o.get("dph_total") or 0)))
    out = []
    n = len(ordered)
    for i, o in enumerate(ordered):
        hours = float(o.get("duration") or 0) / 3600
        if res.rank_by == "price":
            why = f"#{i + 1} of {n} by $/h (cheapest first)"
        else:
            why = f"#{i + 1} of {n} by DLPerf per $ ({_perf_per_dollar(o):.1f})"
        why += f"; reliability {float(o.get('reliability') or 0):.3f}; host contract {hours:.0f} h left"
        out.append(RankedOffer(offer=o, rank=i + 1, reason=why))
    return out


def describe_query(q: dict) -> str:
    parts = []
    for key, cond in q.items():
        if isinstance(cond, dict):
            for op, v in cond.items():
                sym = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": " in "}.get(op, op)
                parts.append(f"{key}{sym}{v}")
    return " ".join(parts)


def billed_rates(offer: dict, res) -> dict:
    """What the instance will be billed per hour: the offer's on-demand GPU rate, or the bid for an
    interruptible one; storage as the offer prices it for the requested disk."""
    storage_dph = max(float(offer.get("dph_total") or 0) - float(offer.get("dph_base") or 0), 0.0)
    gpu = float(res.bid_price) if res.interruptible and res.bid_price is not None else float(offer.get("dph_base") or 0)
    return {"dph_total": round(gpu + storage_dph, 6), "dph_base": gpu, "storage_dph": storage_dph}
