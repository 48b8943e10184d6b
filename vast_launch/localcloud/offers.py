"""The local cloud's offers, and an offer's price for a given disk size, as Vast prices them."""

from __future__ import annotations

import os
import platform
import shutil
import time

HOURS_PER_MONTH = 30 * 24
STORAGE_COST_WHEN_PRICED = 0.15


def default_offers(price_dph: float = 0.0, count: int = 2) -> list[dict]:
    """Offers describing this host. CPU-only is fine: the trainer falls back to CPU."""
    cpus = os.cpu_count() or 1
    try:
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1_000_000
    except (ValueError, OSError):
        mem_mb = 0
    disk_gb = shutil.disk_usage("/").free / 1e9
    offers = []
    for i in range(count):
        offers.append(
            {
                "id": 1001 + i,
                "ask_contract_id": 1001 + i,
                "machine_id": 501 + i,
                "host_id": 77,
                "gpu_name": "Local CPU",
                "num_gpus": 1,
                "gpu_ram": 0,
                "gpu_total_ram": 0,
                "cpu_cores_effective": float(cpus),
                "cpu_ram": mem_mb,
                "disk_space": round(disk_gb, 1),
                "dph_base": float(price_dph),
                # $/GB/month, a typical Vast host's; a free local cloud charges nothing
                "storage_cost": STORAGE_COST_WHEN_PRICED if price_dph > 0 else 0.0,
                "inet_up_cost": 0.0,
                "inet_down_cost": 0.0,
                "min_bid": float(price_dph) / 2,
                "reliability": 0.999 - 0.001 * i,
                "reliability2": 0.999 - 0.001 * i,
                "dlperf": 1.0,
                "cuda_max_good": 12.4,
                "compute_cap": 0,
                "driver_version": "local",
                "verified": True,
                "rentable": True,
                "rented": False,
                "external": False,
                "geolocation": "Local, LO",
                "duration": 30 * 86400.0,
                "direct_port_count": 0,
                "inet_up": 1000.0,
                "inet_down": 1000.0,
                "score": 1.0,
                # The rest of what the vastai client can filter on, so that a filter on any of them
                # selects (or not) instead of excluding every offer for lack of the field.
                "cpu_cores": cpus,
                "cpu_arch": "arm64" if platform.machine() in ("aarch64", "arm64") else "amd64",
                "cpu_ghz": 2.5,
                "has_avx": 1,
                "bw_nvlink": 0.0,
                "gpu_arch": "nvidia",
                "gpu_frac": 1.0,
                "gpu_mem_bw": 0.0,
                "gpu_max_power": 0.0,
                "gpu_max_temp": 0.0,
                "gpu_display_active": False,
                "total_flops": 0.0,
                "flops_per_dphtotal": 0.0,
                "pci_gen": 4.0,
                "pcie_bw": 16.0,
                "disk_bw": 1000.0,
                "mobo_name": "local",
                "ubuntu_version": "22.04",
                "verification": "verified",
                "vms_enabled": False,
                "static_ip": False,
                "datacenter": False,
                "hosting_type": 0,
                "chunked": False,
                "georegion": "Local",
                "cluster_id": None,
            }
        )
    return offers


def priced_offer(offer: dict, storage_gb: float) -> dict:
    """An offer as search shows it: dph_total is for the requested storage."""
    out = dict(offer)
    storage_dph = offer.get("storage_cost", 0.0) * storage_gb / HOURS_PER_MONTH
    out["end_date"] = time.time() + offer.get("duration", 0)
    out["dph_total"] = round(offer["dph_base"] + storage_dph, 6)
    out["dlperf_per_dphtotal"] = out["dlperf"] / out["dph_total"] if out["dph_total"] > 0 else out["dlperf"] * 1e6
    return out
