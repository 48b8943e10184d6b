"""Offer search as Vast answers it: its query operators, country-code geolocation, ordering, and the
v1 list's page tokens."""

from __future__ import annotations

SEARCH_CONTROL_KEYS = {"order", "type", "allocated_storage", "limit", "disable_bundling"}


def _coerce(value, like):
    """Query values arrive as strings from the CLI; compare them as the offer field's type."""
    if isinstance(like, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1")
    if isinstance(like, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    return value  # strings as sent: the vastai client, not the service, turns RTX_4090 into RTX 4090


def country_code(geolocation):
    """Vast's offers carry "Region, CC" and its search compares the two-letter country code."""
    return geolocation.rsplit(",", 1)[-1].strip() if isinstance(geolocation, str) else geolocation


def matches(row: dict, query: dict) -> bool:
    for key, cond in query.items():
        if key in SEARCH_CONTROL_KEYS or not isinstance(cond, dict):
            continue
        have = country_code(row.get(key)) if key == "geolocation" else row.get(key)
        for op, want in cond.items():
            if op in ("in", "notin"):
                wants = [_coerce(w, have) for w in (want or [])]
                ok = (have in wants) if op == "in" else (have not in wants)
            else:
                w = _coerce(want, have)
                try:
                    ok = {
                        "eq": lambda: have == w,
                        "neq": lambda: have != w,
                        "gt": lambda: have > w,
                        "gte": lambda: have >= w,
                        "lt": lambda: have < w,
                        "lte": lambda: have <= w,
                    }[op]()
                except KeyError:
                    ok = True  # unknown operators are ignored, as the real service tolerates extras
                except TypeError:
                    ok = False
            if not ok:
                return False
    return True


SORT_ALIASES = {"dlperf_usd": "dlperf_per_dphtotal", "dph": "dph_total"}


def _sort_key(v):
    return (v is None, v if v is not None else 0)


def sort_rows(rows: list[dict], order) -> list[dict]:
    for col, direction in reversed(order or []):
        col = SORT_ALIASES.get(col, col)
        rows.sort(key=lambda r: _sort_key(r.get(col)), reverse=(direction == "desc"))
    return rows


def sort_values(row: dict, order) -> list:
    return [row.get(SORT_ALIASES.get(c, c)) for c, _ in order]


def comes_after(values: list, token: list, order) -> bool:
    """Keyset pagination, as Vast's v1 list does (its next_token holds the last row's sort values): a
    row belongs to the next pages when it sorts after the token's row; rows that vanished meanwhile
    cannot shift the pages, in either order."""
    for v, t, (_, direction) in zip(values, token, order):
        kv, kt = _sort_key(v), _sort_key(t)
        if kv != kt:
            return kv < kt if direction == "desc" else kv > kt
    return False
