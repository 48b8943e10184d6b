"""`--since 7d`, `--until 2026-11-01`: relative durations or ISO dates, as epoch seconds."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Optional

from .errors import UserError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
LONGEST = 100 * 365 * 86400  # a century: anything longer is a typo


def _seconds(m: re.Match, text: str, option: str) -> float:
    seconds = float(m.group(1)) * UNITS[m.group(2)]
    if seconds > LONGEST:
        raise UserError(f"{option} {text[:40]!r}: longer than a century")
    return seconds


def parse_when(text: Optional[str], option: str, now: Optional[float] = None) -> Optional[float]:
    """'7d' -> now - 7 days; '2026-11-01' or '2026-11-01T12:00' (UTC unless an offset is given)."""
    if text is None or text == "":
        return None
    now = time.time() if now is None else now
    m = RELATIVE.match(text.strip())
    if m:
        return now - _seconds(m, text, option)
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{option} {text[:40]!r}: expected a duration like 30m, 24h, 7d, 2w or a date like 2026-11-01")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_duration(text: str, option: str) -> float:
    m = RELATIVE.match(text.strip())
    if not m:
        raise UserError(f"{option} {text[:40]!r}: expected a duration like 30m, 24h or 7d")
    return _seconds(m, text, option)
