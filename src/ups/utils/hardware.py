"""collect_compute_metadata(): what this job really runs on, for the W&B run config.

Complements W&B's own system metadata (which does not know SLURM allocations, cgroup limits
or Vast container ids). Never raises: every probe has a fallback.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any, Callable, Optional

SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_NODELIST",
    "SLURM_NNODES",
    "SLURM_NTASKS",
    "SLURM_CPUS_PER_TASK",
    "SLURM_CPUS_ON_NODE",
    "SLURM_MEM_PER_NODE",
    "SLURM_MEM_PER_CPU",
    "SLURM_GPUS",
    "SLURM_GPUS_ON_NODE",
    "SLURM_JOB_GPUS",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
)
VAST_VARS = ("CONTAINER_ID", "VAST_CONTAINERLABEL", "GPU_COUNT", "PUBLIC_IPADDR")
LAUNCH_VARS = ("VL_LAUNCH_ID", "VL_COMMIT", "VL_OFFER_ID", "VL_MACHINE_ID", "VL_GPU_NAME", "VL_NUM_GPUS", "VL_DPH_TOTAL", "VL_NAME")


def _safe(fn: Callable[[], Any], default: Any = None) -> Any:
    try:
        return fn()
    except Exception:
        return default


def parse_slurm_count(value: Optional[str]) -> Optional[int]:
    """SLURM_CPUS_ON_NODE / SLURM_JOB_CPUS_PER_NODE: '16', '16(x2)', '8,4(x2)' -> CPUs on this node."""
    if not value:
        return None
    first = value.split(",")[0]
    m = re.match(r"^\s*(\d+)", first)
    return int(m.group(1)) if m else None


def cgroup_cpu_quota(root: Path) -> Optional[float]:
    v2 = root / "cpu.max"
    if v2.exists():
        quota, period = (v2.read_text().split() + ["100000"])[:2]
        return None if quota == "max" else int(quota) / int(period)
    q, p = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if q.exists() and p.exists():
        quota = int(q.read_text())
        return None if quota <= 0 else quota / int(p.read_text())
    return None


def cgroup_memory_limit(root: Path) -> Optional[int]:
    v2 = root / "memory.max"
    if v2.exists():
        text = v2.read_text().strip()
        return None if text == "max" else int(text)
    v1 = root / "memory" / "memory.limit_in_bytes"
    if v1.exists():
        value = int(v1.read_text())
        return None if value >= 1 << 60 else value
    return None


def parse_mem_mb(value: Optional[str]) -> Optional[int]:
    if not value:
        return None
    m = re.match(r"^(\d+)([KMGT]?)$", value.strip().upper())
    if not m:
        return None
    return int(int(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2)])


def _cpu(env: dict, cgroup: Path) -> dict:
    out: dict = {"cpu.arch": platform.machine(), "cpu.os_count": os.cpu_count()}
    affinity = _safe(lambda: len(os.sched_getaffinity(0)))
    quota = _safe(lambda: cgroup_cpu_quota(cgroup))
    slurm = _safe(lambda: int(env["SLURM_CPUS_PER_TASK"])) or parse_slurm_count(env.get("SLURM_CPUS_ON_NODE"))
    out["cpu.affinity"] = affinity
    out["cpu.cgroup_quota"] = quota
    out["cpu.slurm"] = slurm
    candidates = [c for c in (slurm, quota, affinity, os.cpu_count()) if c]
    out["cpu.count"] = int(candidates[0]) if candidates else None
    out["cpu.source"] = "slurm" if slurm else "cgroup" if quota else "affinity" if affinity else "os"
    model = _safe(lambda: next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")))
    out["cpu.model"] = model or platform.processor() or None
    return out


def _gpus(env: dict, torch_module: Any) -> dict:
    out: dict = {}
    count = None
    source = None
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids = [d for d in cvd.split(",") if d.strip() and d.strip() != "-1"]
        count, source = len(ids), "CUDA_VISIBLE_DEVICES"
    elif env.get("SLURM_GPUS_ON_NODE") or env.get("SLURM_JOB_GPUS"):
        raw = env.get("SLURM_GPUS_ON_NODE") or str(len(env["SLURM_JOB_GPUS"].split(",")))
        count, source = parse_slurm_count(raw), "slurm"
    devices = []
    if torch_module is not None and _safe(lambda: torch_module.cuda.is_available(), False):
        n = torch_module.cuda.device_count()
        for i in range(n):
            p = torch_module.cuda.get_device_properties(i)
            devices.append(
                {
                    "name": p.name,
                    "memory_gb": round(p.total_memory / 1e9, 1),
                    "compute_capability": f"{p.major}.{p.minor}",
                    "sm_count": p.multi_processor_count,
                }
            )
        if count is None:
            count, source = n, "torch"
    if not devices:
        devices = _safe(_nvml_devices, []) or []
        if count is None and devices:
            count, source = len(devices), "nvml"
    out["gpu.count"] = count or 0
    out["gpu.source"] = source or "none"
    for i, d in enumerate(devices):
        for k, v in d.items():
            out[f"gpu.{i}.{k}"] = v
    if devices:
        out["gpu.name"] = devices[0]["name"]
    return out


def _nvml_devices() -> list[dict]:
    import pynvml  # optional

    pynvml.nvmlInit()
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
        out.append(
            {
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_gb": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 1e9, 1),
                "compute_capability": f"{major}.{minor}",
                "sm_count": None,
            }
        )
    return out


def _memory(env: dict, cgroup: Path, cpus: Optional[int]) -> dict:
    limit = _safe(lambda: cgroup_memory_limit(cgroup))
    if limit:
        return {"memory.gb": round(limit / 1e9, 2), "memory.source": "cgroup"}
    per_node = parse_mem_mb(env.get("SLURM_MEM_PER_NODE"))
    if per_node:
        return {"memory.gb": round(per_node * 1024 * 1024 / 1e9, 2), "memory.source": "slurm_per_node"}
    per_cpu = parse_mem_mb(env.get("SLURM_MEM_PER_CPU"))
    if per_cpu and cpus:
        return {"memory.gb": round(per_cpu * cpus * 1024 * 1024 / 1e9, 2), "memory.source": "slurm_per_cpu"}
    total = _safe(lambda: os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return {"memory.gb": round(total / 1e9, 2) if total else None, "memory.source": "system"}


def collect_compute_metadata(
    cfg: Optional[dict] = None, env: Optional[dict] = None, cgroup_root: str | Path = "/sys/fs/cgroup", torch_module: Any = "auto"
) -> dict:
    """A flat dict for wandb.config. Never raises; never includes a secret value."""
    env = dict(os.environ if env is None else env)
    cgroup = Path(cgroup_root)
    if torch_module == "auto":
        torch_module = _safe(lambda: __import__("torch"))
    out: dict = {}
    out.update(
        {
            "system.platform": _safe(platform.platform),
            "system.python": platform.python_version(),
            "system.hostname": _safe(socket.gethostname),
            "system.user": _safe(getpass.getuser),
        }
    )
    out["runtime.torch"] = getattr(torch_module, "__version__", None)
    out.update(_safe(lambda: _cpu(env, cgroup), {}))
    out.update(_safe(lambda: _gpus(env, torch_module), {"gpu.count": 0}))
    out.update(_safe(lambda: _memory(env, cgroup, out.get("cpu.count")), {}))
    for var in SLURM_VARS:
        if var in env:
            out[f"slurm.{var[6:].lower()}"] = env[var]
    for var in VAST_VARS:
        if var in env:
            out[f"vast.{var.lower()}"] = env[var]
    for var in LAUNCH_VARS:
        if var in env:
            out[f"launch.{var[3:].lower()}"] = env[var]
    if cfg:
        for section in ("model", "engine", "runtime"):
            for k, v in (cfg.get(section) or {}).items():
                if not isinstance(v, (dict, list)):
                    out[f"{section}.{k}"] = v
    return {k: v for k, v in out.items() if not SECRET_ENV.search(k)}


def summary_line(meta: dict) -> str:
    gpus = meta.get("gpu.count") or 0
    gpu = f"{gpus} GPU{'s' if gpus != 1 else ''}" + (f" ({meta['gpu.name']})" if meta.get("gpu.name") else "")
    mem = meta.get("memory.gb")
    return f"{meta.get('cpu.count')} CPUs, {gpu}, {mem} GB"
