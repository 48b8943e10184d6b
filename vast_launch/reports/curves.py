"""Whatever a launch's stages logged, as curves: from `metrics.jsonl` files among the kept outputs, else from
offline W&B runs there. Nothing here knows a stage or metric name: any project's metrics plot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

NOT_CURVES = {"t", "_timestamp", "_runtime", "_step", "timestamp", "time"}
STEP_NAMES = ("step", "global_step", "epoch", "iteration")
MAX_CURVES = 16


@dataclass
class Curve:
    key: str
    x_label: str
    points: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"key": self.key, "x": self.x_label, "points": self.points}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _is_step(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in STEP_NAMES or key == "_step"


def _step_key(key: str, row: dict, step_for: dict) -> Optional[str]:
    if key in step_for and step_for[key] in row:
        return step_for[key]
    namespace = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    for name in [namespace + s for s in STEP_NAMES] + list(STEP_NAMES) + ["_step"]:
        if name in row and _is_number(row[name]):
            return name
    return None


def from_rows(rows: Iterable[dict], step_for: Optional[dict] = None) -> list[Curve]:
    """Each numeric key that is not a step or a clock becomes a curve over its own step (or the row count)."""
    curves: dict[str, Curve] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key in NOT_CURVES or _is_step(key) or not _is_number(value):
                continue
            step = _step_key(key, row, step_for or {})
            curve = curves.setdefault(key, Curve(key, step or "record"))
            curve.points.append((row[step] if step else i, float(value)))
    ordered = sorted(curves.values(), key=lambda c: "loss" not in c.key.lower())  # losses first, else as logged
    return ordered[:MAX_CURVES]


def _jsonl_rows(paths: list[Path]) -> Iterable[dict]:
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                yield rec


def collect(out_dir: Optional[Path]) -> tuple[list[Curve], str]:
    """(curves, where they came from)."""
    if out_dir is None or not Path(out_dir).is_dir():
        return [], "no outputs kept"
    files = sorted(Path(out_dir).rglob("metrics.jsonl"))
    if files:
        curves = from_rows(_jsonl_rows(files))
        if curves:
            return curves, ", ".join(str(f.relative_to(out_dir)) for f in files)
    try:
        from .wandb_files import find_runs, read_run
    except ImportError:
        return [], "no metrics.jsonl"
    curves: list[Curve] = []
    runs = find_runs(out_dir)
    for path in runs:
        try:
            run = read_run(path)
        except (ImportError, ValueError, OSError):
            continue
        step_for = {name: step for name, step in run.metrics if step}
        curves += from_rows(run.history, step_for)
    return curves[:MAX_CURVES], (f"{len(runs)} offline W&B run(s)" if curves else "no metrics.jsonl or W&B history")
