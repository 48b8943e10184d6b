"""Cost reports as a rich table (people), JSON or CSV (scripts)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Iterable, Iterator, TextIO

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
DRAWN_ROWS = 500  # a cost table by launch longer than this is written as plain columns


def _money(v) -> str:
    if v is None:
        return "-"
    return f"-${-v:,.4f}" if v < 0 else f"${v:,.4f}"


def render(report: Report, fmt: str, out: TextIO) -> None:
    """Written as the rows are read: a million launches stream through in bounded memory."""
    if fmt == "json":
        write_json(report, out)
    elif fmt == "csv":
        write_csv(report, out)
    else:
        write_table(report, out)


def _dumps():
    try:
        import orjson  # ~10x faster than json for 100k-row reports

        return orjson.dumps
    except ImportError:
        return lambda v: json.dumps(v, separators=(",", ":")).encode()


def _chunks(rows: Iterable[dict], size: int = 2000) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_json(report: Report, out: TextIO) -> None:
    """The same document as `json.dumps(report.as_json())`, compact, one chunk of rows at a time (as bytes
    straight to the stream's buffer when it has one: decoding 400 MB only to encode it again costs a second)."""
    dumps = _dumps()
    raw = getattr(out, "buffer", None)
    if raw is not None:
        out.flush()
        write = raw.write
    else:
        write = lambda b: out.write(b.decode())  # noqa: E731
    write(b'{"by":%b,"since":%b,"until":%b,"rows":[' % (dumps(report.by), dumps(report.since), dumps(report.until)))
    first = True
    for chunk in _chunks(report.rows):
        write((b"" if first else b",") + dumps(chunk)[1:-1])  # a chunk as one array, less its brackets
        first = False
    write(b'],"totals":%b,"notes":%b}\n' % (dumps(report.totals), dumps(report.notes)))
    if raw is not None:
        raw.flush()


def write_csv(report: Report, out: TextIO) -> None:
    """As `csv.writer` writes it; a row without a comma, quote or line break inside a value is joined directly
    (twice as fast: the csv module costs 8 µs a row), the others go through the csv module."""
    fields = LAUNCH_FIELDS if report.by == "launch" else GROUP_FIELDS
    w = csv.writer(out, lineterminator="\n")
    w.writerow(fields)
    commas = len(fields) - 1
    buf = io.StringIO()
    quoted = csv.writer(buf, lineterminator="\n")
    for chunk in _chunks(report.rows):
        lines = []
        for row in chunk:
            values = [row[f] for f in fields]
            line = ",".join(["" if v is None else str(v) for v in values])
            if line.count(",") != commas or '"' in line or "\n" in line or "\r" in line:
                buf.seek(0)
                buf.truncate()
                quoted.writerow(values)
                line = buf.getvalue()[:-1]
            lines.append(line)
        out.write("\n".join(lines) + "\n")


def write_table(report: Report, out: TextIO) -> None:
    """A drawn table; by launch with more than DRAWN_ROWS rows, plain columns (drawing is what costs)."""
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

    def cells(row: dict) -> list[str]:
        return [fmt(row[key]) if row[key] is not None or fmt is _money else "-" for _, key, fmt in cols]

    console = Console(file=out, width=160, force_terminal=False)
    if tot["launches"] > DRAWN_ROWS and report.by in ("launch", "group"):  # a row per launch, or nearly
        widths = [max(len(title), 22 if key in ("launch_id", "key") else 12) for title, key, _ in cols]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        if report.by == "launch":  # the start time by the minute, formatted once per minute
            minutes: dict = {}
            fmts = {k: f for _, k, f in cols}
            when = fmts["created_at"]
            fmts["created_at"] = lambda v: minutes.get(v // 60) or minutes.setdefault(v // 60, when(v))
            cols = [(t, k, fmts[k]) for t, k, _ in cols]
        out.write(line.format(*(title for title, _, _ in cols)).rstrip() + "\n")
        for chunk in _chunks(report.rows):
            out.write("".join(line.format(*cells(row)).rstrip() + "\n" for row in chunk))
        out.write(line.format(*(footers.get(key, "") for _, key, _ in cols)).rstrip() + "\n")
    else:
        rows = list(report.rows)
        for row in rows:
            t.add_row(*cells(row))
        console.print(t)
        if not rows:
            console.print("no launches in this window (widen it with --since)")
    for note in report.notes:
        console.print(f"note: {note}")
