"""What `vast-launch status` shows: one row per launch (state, current stage, runtime, rate, cost so far,
deadline, end reason), as JSON or as a table with headers."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Optional

from ..billing import estimate
from ..ledger import Ledger
from ..states import TERMINAL
from ..store import attempt_of

COLUMNS = ("launch", "state", "stage", "runtime", "$/h", "cost", "deadline", "end reason")


def stream(ledger: Ledger, rows: Iterable[dict], scheduler_stages=None, chunk: int = 500) -> Iterator[dict]:
    """`collect` a chunk at a time, each chunk's stages read in one query: for `status --all` of a year."""
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            yield from collect(ledger, batch, scheduler_stages, ledger.stages_of([r["id"] for r in batch]))
            batch = []
    if batch:
        yield from collect(ledger, batch, scheduler_stages, ledger.stages_of([r["id"] for r in batch]))


def collect(
    ledger: Ledger,
    rows: list[dict],
    scheduler_stages: Optional[Callable[[dict], Optional[list]]] = None,
    stages_of: Optional[dict] = None,
) -> list[dict]:
    """Each row as status shows it (the JSON form; the table is drawn from it). An ended launch's cost is its
    frozen one; an open launch's is estimated from its timeline now.

    scheduler_stages: for a launch a scheduler runs (SLURM), its stages as the scheduler sees them now,
    after bringing the row up to date; None for other launches. stages_of: the rows' stages, read already.
    """
    out = []
    for r in rows:
        slurm_stages = scheduler_stages(r) if scheduler_stages else None
        if slurm_stages is not None:
            r = ledger.get(r["id"])
        frozen = r["ended_at"] is not None and r["cost_usd"] is not None
        est = {"cost_usd": r["cost_usd"]} if frozen else estimate(r, ledger.events(r["id"]))
        stages = stages_of[r["id"]] if stages_of is not None and r["id"] in stages_of else ledger.stages(r["id"])
        out.append(
            {
                "launch_id": r["id"],
                "instance_id": r["instance_id"],
                "target": r["target"],
                "state": r["state"],
                "stage": current_stage(stages),
                "commit": r["commit_sha"],
                "created_at": r["created_at"],
                "ended_at": r["ended_at"],
                "end_reason": r["end_reason"],
                "dph_total": r["dph_total"],
                "cost_usd": round(est["cost_usd"], 6),
                "wandb_group": r["wandb_group"],
                "deadline": r["deadline"],
                "gpu_name": r["gpu_name"],
                "attempt": attempt_of(r),
                "max_attempts": (r.get("extra") or {}).get("max_attempts") if isinstance(r.get("extra"), dict) else None,
                **({"stages": slurm_stages} if slurm_stages is not None else {}),
            }
        )
    return out


def current_stage(stages: list[dict]) -> Optional[str]:
    """The stage running now, or how the last one ended; None before the first."""
    if not stages:
        return None
    last = stages[-1]
    if last["end"] is None:
        return last["name"]
    return f"{last['name']} " + ("done" if last["rc"] == 0 else f"failed (exit {last['rc']})")


def is_active(shown: dict) -> bool:
    return shown["ended_at"] is None and shown["state"] not in TERMINAL


def table(shown: list[dict], now: Optional[float] = None, default_target: str = ""):
    """The launches as a table; a launch on another target than the default says which."""
    from rich.table import Table  # only when a table is drawn: `status --json` and hooks start fast

    now = now or time.time()
    t = Table(box=None, pad_edge=False, header_style="bold")
    for name in COLUMNS:  # ids are copied from here: never cut them
        t.add_column(
            name,
            no_wrap=name in ("launch", "state"),
            min_width=max((len(o["launch_id"]) for o in shown), default=6) if name == "launch" else None,
        )
    for o in shown:
        t.add_row(*cells(o, now, default_target))
    return t


DRAWN_ROWS = 200  # more rows than this are written as plain columns: drawing 24,000 rows took 65 s


def cells(o: dict, now: float, default_target: str = "") -> tuple:
    runtime = (o["ended_at"] or now) - o["created_at"]
    stage = o["stage"] or "-"
    if "stages" in o:
        stage = ", ".join(f"{s['stage']}: {s['state']}" for s in o["stages"]) or "-"
    return (
        o["launch_id"],
        o["state"] + ("" if o["target"] in (default_target, None) else f" ({o['target']})") + _attempt(o),
        stage,
        _span(runtime),
        f"{o['dph_total']:.3f}" if o["dph_total"] else "-",
        f"${o['cost_usd']:.4f}",
        _deadline(o["deadline"], now) if is_active(o) else "-",
        o["end_reason"] or "",
    )


def _attempt(o: dict) -> str:
    """` (attempt 2/3)` for a launch that may recover, or did; nothing for a launch of one instance."""
    if o.get("attempt", 1) > 1 or o.get("max_attempts"):
        return f" (attempt {o['attempt']}/{o['max_attempts'] or o['attempt']})"
    return ""


def write_plain(shown: list[dict], out, now: Optional[float] = None, default_target: str = "") -> None:
    """The table's columns as plain text, widths from the rows: for thousands of rows."""
    now = now or time.time()
    rows = [cells(o, now, default_target) for o in shown]
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLUMNS) - 1)]
    for r in [COLUMNS, *rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")


def write_json(shown, out) -> None:
    """A JSON array, one launch at a time, as `json.dumps(list, indent=2)` would print it."""
    import json

    out.write("[")
    n = 0
    for n, o in enumerate(shown, 1):
        out.write(("," if n > 1 else "") + "\n  " + json.dumps(o, indent=2).replace("\n", "\n  "))
    out.write("\n]\n" if n else "]\n")


def write_plain_stream(shown: Iterable[dict], out, now: Optional[float] = None, default_target: str = "") -> int:
    """Plain columns of fixed widths, written as the rows come (`status --all` of a year); the rows written."""
    now = now or time.time()
    widths = (30, 24, 24, 9, 8, 10, 30)
    n = 0
    out.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)) + "  " + COLUMNS[-1] + "\n")
    for n, o in enumerate(shown, 1):
        r = cells(o, now, default_target)
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
    return n


def _span(seconds: float) -> str:
    m, s = divmod(int(max(seconds, 0)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _deadline(deadline: Optional[float], now: float) -> str:
    if not deadline:
        return "-"
    when = datetime.fromtimestamp(deadline, timezone.utc)
    return f"{when:%m-%d %H:%M} UTC (in {_span(deadline - now)})"
