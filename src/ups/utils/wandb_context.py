"""One W&B run per stage; one group per launch; one x-axis per stage.

Each stage gets its own step metric `training/<stage>/step`, and every metric of the stage is
logged together with it in one dict. `step=` is never passed to `wandb.log`: a second stage
whose steps restart at 0 would be silently dropped by W&B.

W&B that is unreachable or misconfigured never stops training: the context warns once, falls
back to an offline run (or to no run), and always writes metrics to `<run_dir>/metrics.jsonl`.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from .hardware import collect_compute_metadata, summary_line

_printed_groups: set[str] = set()


def resolve_group(cfg: dict, env: Optional[dict] = None) -> tuple[str, str]:
    """(group, where it came from), by priority."""
    env = os.environ if env is None else env
    wb = cfg.get("wandb") or {}
    for source, value in (
        ("config wandb.group", wb.get("group")),
        ("WANDB_RUN_GROUP", env.get("WANDB_RUN_GROUP")),
        ("WANDB_GROUP", env.get("WANDB_GROUP")),
        ("SUBMITIT_JOB_ID", env.get("SUBMITIT_JOB_ID")),
        ("SLURM_JOB_ID", env.get("SLURM_JOB_ID")),
        ("VL_LAUNCH_ID", env.get("VL_LAUNCH_ID")),
    ):
        if value:
            return str(value), source
    return f"{cfg.get('name', 'ups')}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}", "generated"


def resolve_mode(cfg: dict, env: Optional[dict] = None) -> str:
    env = os.environ if env is None else env
    mode = env.get("WANDB_MODE") or (cfg.get("wandb") or {}).get("mode") or "offline"
    if env.get("WANDB_DISABLED", "").lower() in ("true", "1"):
        mode = "disabled"
    return {"dryrun": "offline", "run": "online"}.get(mode, mode)


class WandbContext:
    def __init__(self, cfg: dict, stage: str, run_dir: str | Path = ".", rank: int = 0, quiet: bool = False):
        self.cfg, self.stage, self.rank = cfg, stage, rank
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.group, self.group_source = resolve_group(cfg)
        self.mode = resolve_mode(cfg)
        self.name = f"{cfg.get('name', 'ups')}-{stage}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        self.run: Any = None
        self.quiet = quiet
        self._warned = False
        self._metrics_file = None
        self.metadata: dict = {}

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> "WandbContext":
        os.environ["WANDB_RUN_GROUP"] = self.group  # children and later stages use the same group
        if self.rank != 0:
            return self
        if self.group not in _printed_groups and not self.quiet:
            print(f"[ups] W&B group {self.group} (from {self.group_source}); mode {self.mode}", flush=True)
            _printed_groups.add(self.group)
        self.metadata = collect_compute_metadata(self.cfg)
        if not self.quiet:
            print(f"[ups] {self.stage}: {summary_line(self.metadata)}", flush=True)
        self._metrics_file = open(self.run_dir / "metrics.jsonl", "a")
        if self.mode != "disabled":
            self.run = self._init(self.mode) or (self._init("offline") if self.mode == "online" else None)
        if self.run is not None:
            self.define_stage_metrics(self.stage)
        return self

    def _init(self, mode: str):
        try:
            import wandb

            wb = self.cfg.get("wandb") or {}
            config = {
                "stage": self.stage,
                "profile": self.cfg.get("profile"),
                "train": self.cfg.get("train_profile") or {},
                **self.metadata,
            }
            return wandb.init(
                project=wb.get("project") or "ups",
                entity=wb.get("entity"),
                group=self.group,
                job_type=self.stage,
                name=self.name,
                dir=str(self.run_dir),
                mode=mode,
                config=config,
                reinit="create_new",
                settings=wandb.Settings(
                    init_timeout=float(os.environ.get("UPS_WANDB_INIT_TIMEOUT", "60")), silent=True, console="off"
                ),
            )
        except Exception as exc:  # W&B must never stop training
            self._warn(f"W&B {mode} init failed ({type(exc).__name__}: {str(exc)[:200]})")
            return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._metrics_file:
            self._metrics_file.close()
        if self.run is not None:
            try:
                self.run.finish(exit_code=1 if exc_type else 0)
            except Exception as e:
                self._warn(f"W&B finish failed: {e}")

    def _warn(self, msg: str) -> None:
        if not self._warned:
            print(
                f"[ups] WARNING: {msg}; training continues, metrics kept in {self.run_dir}/metrics.jsonl", file=sys.stderr, flush=True
            )
            self._warned = True

    def _safe(self, fn) -> None:
        """Run fn() against the live run; W&B errors are warned about once, never raised."""
        if self.run is None:
            return
        try:
            fn()
        except Exception as exc:
            self._warn(f"W&B call failed ({type(exc).__name__}: {exc})")

    # --- logging ------------------------------------------------------------------------------
    def define_stage_metrics(self, stage: str) -> None:
        step = f"training/{stage}/step"
        self._safe(lambda: self.run.define_metric(step))
        self._safe(lambda: self.run.define_metric(f"training/{stage}/*", step_metric=step))

    def log_training_metric(self, stage: str, name: str, value: float, step: int) -> None:
        self.log_training_metrics(stage, {name: value}, step)

    def log_training_metrics(self, stage: str, values: dict, step: int) -> None:
        """Values and the stage's step key in ONE dict; never `step=`."""
        if self.rank != 0:
            return
        row = {f"training/{stage}/{k}": float(v) for k, v in values.items()}
        row[f"training/{stage}/step"] = int(step)
        self._local({"t": time.time(), **row})
        self._safe(lambda: self.run.log(row))

    def log_metrics(self, values: dict) -> None:
        if self.rank != 0:
            return
        self._local({"t": time.time(), **values})
        self._safe(lambda: self.run.log(dict(values)))

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        if self.rank != 0:
            return
        self._local({"t": time.time(), "table": key, "columns": columns, "rows": rows})
        if self.run is not None:
            import wandb

            self._safe(lambda: self.run.log({key: wandb.Table(columns=columns, data=rows)}))

    def log_artifact(self, path: str | Path, name: str, type: str = "checkpoint") -> None:
        if self.rank != 0 or self.run is None:
            return
        import wandb

        def do():
            art = wandb.Artifact(name=name, type=type)
            art.add_file(str(path))
            self.run.log_artifact(art)

        self._safe(do)

    def set_summary(self, values: dict) -> None:
        if self.rank != 0:
            return
        self._local({"t": time.time(), "summary": values})
        if self.run is not None:
            self._safe(lambda: self.run.summary.update(values))

    def _local(self, row: dict) -> None:
        if self._metrics_file:
            self._metrics_file.write(json.dumps(row, default=float) + "\n")
            self._metrics_file.flush()
