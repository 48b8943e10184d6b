"""The one adapter between vast-launch and W&B runs: the public API, or offline run files.

Everything downstream (the collector, cost sync) sees `RunRecord`s only, so tests can feed it
recorded runs and the offline runs that `ups` writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator


@dataclass
class RunRecord:
    id: str
    name: str
    state: str  # running, finished, failed, crashed, killed, preempted ...
    created_at: float  # epoch seconds
    duration_s: float
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    group: str = ""
    job_type: str = ""
    sweep: str = ""
    tags: list = field(default_factory=list)


def parse_time(value: Any) -> float:
    """W&B timestamps: ISO strings with or without 'Z', or epoch numbers."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def summary_of(run: Any) -> dict:
    """The run's summary as a dict. Crashed runs can carry `_json_dict` as a JSON *string*."""
    summary = getattr(run, "summary", None)
    raw = getattr(summary, "_json_dict", None) if summary is not None else None
    if raw is None:
        raw = summary if isinstance(summary, dict) else getattr(run, "summary_metrics", None)
    if isinstance(raw, (str, bytes, bytearray)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = {}
    return dict(raw) if isinstance(raw, dict) else {}


def config_of(run: Any) -> dict:
    cfg = getattr(run, "config", None) or {}
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            cfg = {}
    # runs read back from the API can wrap values as {"value": v}
    return {k: (v["value"] if isinstance(v, dict) and set(v) == {"value"} else v) for k, v in cfg.items()}


def record_from_api_run(run: Any) -> RunRecord:
    summary = summary_of(run)
    created = parse_time(getattr(run, "created_at", None))
    duration = summary.get("_runtime") or (summary.get("_wandb") or {}).get("runtime")
    if duration is None:
        attrs = getattr(run, "_attrs", {}) or {}
        heartbeat = parse_time(attrs.get("heartbeatAt"))
        duration = max(heartbeat - created, 0.0) if heartbeat else 0.0
    return RunRecord(
        id=str(getattr(run, "id", "")),
        name=str(getattr(run, "name", "") or ""),
        state=str(getattr(run, "state", "") or "").lower(),
        created_at=created,
        duration_s=float(duration),
        config=config_of(run),
        summary=summary,
        group=str(getattr(run, "group", "") or ""),
        job_type=str(getattr(run, "job_type", "") or ""),
        sweep=str(getattr(run, "sweep_name", None) or ""),
        tags=list(getattr(run, "tags", None) or []),
    )


def window_filters(created_after: float) -> dict:
    """Server-side filter: runs created in the window, plus runs still running whenever they started."""
    iso = datetime.fromtimestamp(created_after, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"$or": [{"createdAt": {"$gte": iso}}, {"state": "running"}]}


class ApiRunSource:
    """Runs of one W&B project through the public API: filtered on the server, paged lazily."""

    def __init__(self, path: str, api: Any = None, per_page: int = 100, timeout: int = 30):
        self.path = path
        self.per_page = per_page
        if api is None:
            import wandb

            api = wandb.Api(timeout=timeout)
        self.api = api

    def runs(self, created_after: float) -> Iterator[RunRecord]:
        pages = self.api.runs(self.path, filters=window_filters(created_after), order="-created_at", per_page=self.per_page)
        for run in pages:  # the SDK fetches the next page only when this loop reaches it
            yield record_from_api_run(run)


class OfflineRunSource:
    """Runs written in offline mode (a launch's pulled outputs, a WANDB_DIR)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def runs(self, created_after: float) -> Iterator[RunRecord]:
        from .wandb_files import find_runs, read_run

        for path in find_runs(self.root):
            run = read_run(path)
            if run.start_time and run.start_time < created_after and run.finished:
                continue
            if not run.finished:
                state = "running"
            else:
                state = "finished" if run.exit_code == 0 else "failed"
            runtime = run.runtime or run.summary.get("_runtime") or 0.0
            yield RunRecord(
                id=run.run_id,
                name=run.name,
                state=state,
                created_at=run.start_time,
                duration_s=float(runtime),
                config=run.config,
                summary=run.summary,
                group=run.group,
                job_type=run.job_type,
                sweep=run.sweep_id,
                tags=run.tags,
            )


# --- cost into W&B summaries ---------------------------------------------------------------------
def sync_cost_to_wandb(ledger, launch_rows: list[dict], api: Any = None) -> str:
    """Write cost_usd, gpu_hours and dph_total into the summary of every run of each launch's group.

    A run is one stage (job_type), so it gets that stage's share; W&B offline means nothing to write.
    """
    from .cost import stage_parts

    if api is None:
        if os.environ.get("WANDB_MODE") in ("offline", "disabled") or not os.environ.get("WANDB_API_KEY"):
            return "W&B sync skipped: W&B is offline here (set WANDB_API_KEY, unset WANDB_MODE=offline)"
        import wandb

        api = wandb.Api(timeout=30)
    written = 0
    for row in launch_rows:
        full = ledger.get(row["launch_id"])
        if not full or not full.get("wandb_group") or not full.get("wandb_project"):
            continue
        parts = {name: (usd, share) for name, usd, share in stage_parts(row, ledger.stages(row["launch_id"]))}
        path = full["wandb_project"] if "/" in full["wandb_project"] else f"{api.default_entity}/{full['wandb_project']}"
        for run in api.runs(path, filters={"group": full["wandb_group"]}):
            stage_usd, share = parts.get(run.job_type, (0.0, 0.0))
            run.summary.update(
                {
                    "cost_usd": round(stage_usd, 6),
                    "gpu_hours": round(row["gpu_hours"] * share, 6),
                    "dph_total": float(row["dph_total"] or 0.0),
                    "launch_cost_usd": round(row["cost_usd"], 6),
                }
            )
            written += 1
    return f"W&B: cost written into {written} run summaries"
