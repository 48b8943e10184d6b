"""W&B run-health metrics: activity, failures, durations, GPU hours, CI and sweep health.

Reads `RunRecord`s from one source (see wandb_api), never more than the window asks for, and
never for longer than the time limit: what was read by then is reported, marked partial.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from .wandb_api import RunRecord

FAILED_STATES = {"failed", "crashed", "killed", "preempted"}
PUSH_TO_MAIN_PREFIX = "github.sky."
GPU_COUNT_KEYS = ("gpu.count", "gpu_count", "num_gpus", "n_gpus")
SPS_KEYS = ("overview/sps", "sps", "perf/sps")


@dataclass
class Collected:
    metrics: dict[str, float]
    runs_seen: int
    partial: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def window_label(window_s: float) -> str:
    """86400 -> '24h' (the names dashboards expect), 7 days -> '7d', 30 min -> '30m'."""
    window_s = round(window_s)
    if window_s > 86400 and window_s % 86400 == 0:
        return f"{window_s // 86400}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if window_s >= size and window_s % size == 0:
            return f"{window_s // size}{unit}"
    return f"{window_s}s"


def gpu_count(run: RunRecord) -> Optional[int]:
    for key in GPU_COUNT_KEYS:
        value = run.config.get(key)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                continue
    return None


def sps_of(run: RunRecord, extra_key: Optional[str] = None) -> Optional[float]:
    keys = ((extra_key,) if extra_key else ()) + SPS_KEYS
    for key in keys:
        value = run.summary.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    for key, value in run.summary.items():  # e.g. training/operator/samples_per_s
        if isinstance(value, (int, float)) and (key.endswith("/sps") or key.endswith("samples_per_s")):
            return float(value)
    return None


def is_push_to_main(run: RunRecord) -> bool:
    return run.name.startswith(PUSH_TO_MAIN_PREFIX)


def is_sweep(run: RunRecord) -> bool:
    return bool(run.sweep) or ".sweep" in run.name


def read_bounded(runs: Iterable[RunRecord], time_limit: float) -> tuple[list[RunRecord], bool]:
    """Everything the source yields within time_limit seconds, even if one page request hangs."""
    q: queue.Queue = queue.Queue()
    done = object()

    def pump():
        try:
            for run in runs:
                q.put(run)
        except Exception as exc:  # reported to the caller, not lost in the thread
            q.put(exc)
        q.put(done)

    threading.Thread(target=pump, daemon=True, name="wandb-runs").start()
    deadline = time.monotonic() + time_limit
    out: list[RunRecord] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, True
        try:
            item = q.get(timeout=left)
        except queue.Empty:
            return out, True
        if item is done:
            return out, False
        if isinstance(item, Exception):
            raise item
        out.append(item)


def compute(runs: list[RunRecord], window_start: float, now: float, sps_key: Optional[str] = None) -> dict:
    label = window_label(now - window_start)
    recent = [r for r in runs if r.created_at >= window_start]
    active = [r for r in runs if r.state == "running"]
    ended_recent = [r for r in recent if r.state != "running"]
    in_scope = list({r.id: r for r in recent + active}.values())  # created in the window, or still running
    m: dict[str, float] = {
        "wandb.runs.active": len(active),
        f"wandb.runs.completed_{label}": sum(r.state == "finished" for r in recent),
        f"wandb.runs.failed_{label}": sum(r.state in FAILED_STATES for r in recent),
        "wandb.runs.total_recent": len(in_scope),
    }
    durations = [r.duration_s / 3600 for r in ended_recent if r.duration_s]
    m["wandb.training.avg_duration_hours"] = statistics.fmean(durations) if durations else 0.0
    gpu_hours, assumed = 0.0, 0
    for r in in_scope:
        start = max(r.created_at, window_start)
        end = min(r.created_at + r.duration_s, now) if r.state != "running" else now
        count = gpu_count(r)
        if count is None:
            count, assumed = 1, assumed + 1
        gpu_hours += max(end - start, 0.0) / 3600 * count
    m[f"wandb.training.total_gpu_hours_{label}"] = gpu_hours
    m["wandb.training.runs_without_gpu_count"] = assumed
    m.update(_success_metrics("wandb.push_to_main", [r for r in in_scope if is_push_to_main(r)]))
    ptm_done = sorted((r for r in ended_recent if is_push_to_main(r)), key=lambda r: r.created_at)
    sps = [v for v in (sps_of(r, sps_key) for r in ptm_done) if v is not None]
    m["wandb.push_to_main.avg_duration_hours"] = statistics.fmean(r.duration_s / 3600 for r in ptm_done) if ptm_done else 0.0
    sps_stats = {"latest": lambda v: v[-1], "mean": statistics.fmean, "median": statistics.median, "min": min, "max": max}
    m.update({f"wandb.push_to_main.sps.{k}": stat(sps) if sps else 0.0 for k, stat in sps_stats.items()})
    m.update(_success_metrics("wandb.sweep", [r for r in in_scope if is_sweep(r)]))
    return m


def _success_metrics(prefix: str, runs: list[RunRecord]) -> dict:
    ok = sum(r.state == "finished" for r in runs)
    failed = sum(r.state in FAILED_STATES for r in runs)
    return {
        f"{prefix}.runs": len(runs),
        f"{prefix}.active": sum(r.state == "running" for r in runs),
        f"{prefix}.completed": ok,
        f"{prefix}.failed": failed,
        f"{prefix}.success_rate": ok / (ok + failed) if ok + failed else 0.0,
    }


def collect(
    source, window_s: float = 86400, time_limit: float = 120.0, sps_key: Optional[str] = None, clock: Callable[[], float] = time.time
) -> Collected:
    t0 = time.monotonic()
    now = clock()
    runs, partial = read_bounded(source.runs(now - window_s), time_limit)
    metrics = compute(runs, now - window_s, now, sps_key)
    seconds = time.monotonic() - t0
    metrics["wandb.collector.runs_seen"] = len(runs)
    metrics["wandb.collector.partial"] = int(partial)
    metrics["wandb.collector.duration_seconds"] = seconds
    notes = [f"stopped at the {time_limit:.0f} s time limit after {len(runs)} runs: metrics are partial"] if partial else []
    return Collected(metrics, len(runs), partial, seconds, notes)


# --- output -------------------------------------------------------------------------------------
def prometheus_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def to_prometheus(metrics: dict[str, float]) -> str:
    lines = []
    for name, value in sorted(metrics.items()):
        prom = prometheus_name(name)
        lines += [f"# HELP {prom} {name} (vast-launch metrics)", f"# TYPE {prom} gauge", f"{prom} {float(value)!r}"]
    return "\n".join(lines) + "\n"


def push_datadog(metrics: dict[str, float], tags: list[str], env: Optional[dict] = None) -> int:
    """Send gauges through the `datadog` package (extra: vast-launch[datadog]); only with DD_API_KEY."""
    import os

    from ..errors import UserError

    env = os.environ if env is None else env
    if not env.get("DD_API_KEY"):
        raise UserError("--push datadog needs DD_API_KEY in the environment (and DD_SITE for non-US1 sites)")
    try:
        from datadog import api, initialize
    except ImportError:
        raise UserError("--push datadog needs the datadog package: pip install 'vast-launch[datadog]'")
    initialize(api_key=env["DD_API_KEY"], app_key=env.get("DD_APP_KEY"), api_host=f"https://api.{env.get('DD_SITE', 'datadoghq.com')}")
    now = int(time.time())
    series = [{"metric": name, "points": [(now, float(v))], "type": "gauge", "tags": tags} for name, v in metrics.items()]
    api.Metric.send(metrics=series)
    return len(series)
