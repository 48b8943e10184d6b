"""Cost reports as a rich table (people), JSON or CSV (scripts)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Callable

from .cost import Report

LAUNCH_FIELDS = [
    "launch_id",
    "created_at",
    "state",
    "wandb_group",
    "gpu_name",
    "num_gpus",
    "instance_id",
    "dph_total",
    "gpu_hours",
    "cost_usd",
    "billed_usd",
    "difference_usd",
]
GROUP_FIELDS = ["key", "launches", "gpu_hours", "cost_usd", "billed_usd", "usd_per_gpu_hour"]


def _money(v) -> str:
    if v is None:
        return "-"
    return f"-${-v:,.4f}" if v < 0 else f"${v:,.4f}"


def render(report: Report, fmt: str, echo: Callable[[str], None]) -> None:
    if fmt == "json":
        echo(to_json(report))
    elif fmt == "csv":
        echo(to_csv(report))
    else:
        echo(to_table(report))


def to_json(report: Report) -> str:
    try:
        import orjson  # ~10x faster than json for 100k-row reports
    except ImportError:
        return json.dumps(report.as_json(), separators=(",", ":"))
    return orjson.dumps(report.as_json()).decode()


def to_csv(report: Report) -> str:
    fields = LAUNCH_FIELDS if report.by == "launch" else GROUP_FIELDS
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(report.rows)
    return buf.getvalue().rstrip("\n")


def to_table(report: Report) -> str:
    from rich.console import Console
    from rich.table import Table

    key_title = {"launch": "launch", "group": "W&B group", "stage": "stage", "gpu": "GPU", "day": "day (UTC)"}
    t = Table(title=f"cost by {report.by}", show_footer=True, footer_style="bold")
    tot = report.totals
    if report.by == "launch":
        cols = [
            ("launch", "launch_id", str),
            ("started (UTC)", "created_at", lambda v: datetime.fromtimestamp(v, timezone.utc).strftime("%m-%d %H:%M")),
            ("state", "state", str),
            ("GPU", "gpu_name", lambda v: v or "-"),
            ("GPU h", "gpu_hours", lambda v: f"{v:.3f}"),
            ("estimate", "cost_usd", _money),
            ("billed", "billed_usd", _money),
            ("difference", "difference_usd", _money),
        ]
        footers = {
            "launch_id": f"{tot['launches']} launches",
            "gpu_hours": f"{tot['gpu_hours']:.3f}",
            "cost_usd": _money(tot["cost_usd"]),
            "billed_usd": _money(tot["billed_usd"]) if tot["billed_launches"] else "-",
        }
    else:
        cols = [
            (key_title[report.by], "key", str),
            ("launches", "launches", str),
            ("GPU h", "gpu_hours", lambda v: f"{v:.3f}"),
            ("estimate", "cost_usd", _money),
            ("billed", "billed_usd", _money),
            ("$/GPU h", "usd_per_gpu_hour", _money),
        ]
        footers = {
            "key": "total",
            "launches": str(tot["launches"]),
            "gpu_hours": f"{tot['gpu_hours']:.3f}",
            "cost_usd": _money(tot["cost_usd"]),
            "usd_per_gpu_hour": _money(tot["usd_per_gpu_hour"]),
        }
    for title, key, _ in cols:
        numeric = key not in ("launch_id", "key", "state", "gpu_name", "created_at")
        t.add_column(title, footer=footers.get(key, ""), justify="right" if numeric else "left")
    for row in report.rows:
        t.add_row(*[fmt(row[key]) if row[key] is not None or fmt is _money else "-" for _, key, fmt in cols])
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(t)
    for note in report.notes:
        console.print(f"note: {note}")
    if not report.rows:
        console.print("no launches in this window (widen it with --since)")
    return console.file.getvalue().rstrip("\n")
