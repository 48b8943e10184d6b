"""SQLite ledger of launches and every state change, written before and after each provider call.

A launcher that crashes mid-launch leaves a row the reaper can act on.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from . import cost_rollup
from .billing import estimate
from .errors import UserError
from .ledger_schema import COLUMNS, MIGRATIONS, SCHEMA_VERSION
from .state_dir import default_home, private_dir
from .states import TERMINAL

# The columns a launch's cost rollup depends on: a write to none of them leaves the rollup alone.
ROLLED_COLUMNS = frozenset(
    {"created_at", "ended_at", "target", "gpu_name", "num_gpus", "dph_total", "gpu_seconds", "cost_usd", "billed_usd"}
)

LOCK_TIMEOUT_S = float(os.environ.get("VAST_LAUNCH_LEDGER_TIMEOUT") or 30)


def ledger_problem(exc: Exception, path: Path) -> str:
    """A SQLite error as one line that names the ledger and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"ledger {path} is locked by another process for more than {LOCK_TIMEOUT_S:g} s: wait, or find it with `fuser {path}`"
    if "readonly" in text or "read-only" in text:
        return f"ledger {path} is read-only: make it (and {path.parent}) writable, or set VAST_LAUNCH_HOME to another directory"
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text or "corrupt" in text):
        return f"ledger {path} is damaged ({text}): move it aside (mv {path} {path}.damaged); the next command starts a new one"
    if "disk" in text and ("full" in text or "I/O" in text):
        return f"ledger {path}: {text} (free space, or set VAST_LAUNCH_HOME to another directory)"
    return f"ledger {path}: {text}"


def window_clause(since: Optional[float], until: Optional[float]) -> tuple[str, list]:
    """` AND created_at >= ? AND created_at < ?` for the bounds given, and its arguments."""
    sql, args = "", []
    if since is not None:
        sql, args = sql + " AND created_at >= ?", args + [since]
    if until is not None:
        sql, args = sql + " AND created_at < ?", args + [until]
    return sql, args


class Ledger:
    def __init__(self, path: Optional[Path] = None, create: bool = True):
        """create=False (commands that only read): a ledger that does not exist yet is an empty one, and
        nothing is created on disk (no state dir under a HOME that points nowhere)."""
        self.path = Path(path) if path else default_home() / "ledger.sqlite"
        try:
            if not create and not self.path.exists():
                self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                private_dir(self.path.parent)
                # Owner-only from the first byte (SQLite gives its -wal and -shm files the database's mode).
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
                self.db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.row_factory = sqlite3.Row
            self._prepare()
        except sqlite3.Error as exc:
            raise UserError(ledger_problem(exc, self.path)) from None
        except OSError as exc:
            raise UserError(f"ledger {self.path}: {exc.strerror or exc} (set VAST_LAUNCH_HOME to a writable directory)") from None

    def _prepare(self) -> None:
        """Bring the ledger to SCHEMA_VERSION in one transaction (nothing is written when it is there);
        a ledger written by a newer vast-launch is refused rather than changed."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise UserError(
                f"ledger {self.path} has schema {version}, newer than this vast-launch's ({SCHEMA_VERSION}): upgrade vast-launch"
            )
        self.db.execute("BEGIN IMMEDIATE")  # two commands opening an old ledger at once: one migrates
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number, migrate in MIGRATIONS:
                if number > version:
                    migrate(self.db)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def workspace(self) -> str:
        """Who launched, as instance labels say it: $VAST_LAUNCH_WORKSPACE, else this ledger's own name
        (made once: its host and 6 random hex digits), so two ledgers on one Vast account tell their
        instances apart."""
        from .protocol import WORKSPACE

        chosen = os.environ.get("VAST_LAUNCH_WORKSPACE")
        if chosen:
            if not WORKSPACE.match(chosen):
                from .errors import UserError

                raise UserError(f"VAST_LAUNCH_WORKSPACE={chosen!r}: 1-64 letters, digits, '.', '_' or '-'")
            return chosen
        row = self.db.execute("SELECT value FROM meta WHERE key = 'workspace'").fetchone()
        if row:
            return row[0]
        import re
        import secrets
        import socket

        name = (re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-")[:40] or "ws") + "-" + secrets.token_hex(3)
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('workspace', ?)", (name,))
        return self.db.execute("SELECT value FROM meta WHERE key = 'workspace'").fetchone()[0]

    def reopen(self, launch_id: str, detail: dict) -> None:
        """A launch starts another attempt (resume, recovery): it is open again, its cost no longer frozen."""
        now = time.time()
        with self.transaction(), self._rolled(launch_id):
            self.db.execute(
                "INSERT INTO events (launch_id, t, state, detail) VALUES (?, ?, 'resuming', ?)", (launch_id, now, json.dumps(detail))
            )
            self.db.execute(
                "UPDATE launches SET state = 'resuming', updated_at = ?, ended_at = NULL, end_reason = NULL, gpu_seconds = NULL, "
                "storage_seconds = NULL, cost_usd = NULL, billed_usd = NULL, billed_at = NULL WHERE id = ?",
                (now, launch_id),
            )

    @contextmanager
    def transaction(self):
        """One atomic write. The connection is in autocommit mode, where `with db:` would not group."""
        if self.db.in_transaction:  # left open by a signal that landed between BEGIN and COMMIT
            self.db.execute("ROLLBACK")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def create(self, launch_id: str, state: str, **fields: Any) -> None:
        now = time.time()
        fields = self._clean(fields)
        cols = ["id", "created_at", "updated_at", "state", *fields]
        vals = [launch_id, now, now, state, *fields.values()]
        with self.transaction():
            self.db.execute(f"INSERT INTO launches ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
            self.db.execute("INSERT INTO events (launch_id, t, state, detail) VALUES (?, ?, ?, ?)", (launch_id, now, state, None))

    def update(self, launch_id: str, **fields: Any) -> None:
        fields = self._clean(fields)
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction(), self._rolled(launch_id, fields):
            self.db.execute(f"UPDATE launches SET {sets} WHERE id = ?", [*fields.values(), launch_id])

    @contextmanager
    def _rolled(self, launch_id: str, fields: Optional[dict] = None):
        """Inside a transaction: a write that may change what an ended launch adds to the cost rollup takes its old
        contribution out before and puts the new one in after (cost_rollup.py)."""
        if fields is not None and not ROLLED_COLUMNS.intersection(fields):
            yield
            return
        old = cost_rollup.of_launch(self.db, launch_id)
        yield
        new = cost_rollup.of_launch(self.db, launch_id)
        if old != new:
            cost_rollup.apply(self.db, old, -1)
            cost_rollup.apply(self.db, new, +1)

    def event(
        self, launch_id: str, state: str, detail: Any = None, t: Optional[float] = None, set_state: bool = True, **fields: Any
    ) -> None:
        """Record a state change (and optionally update columns) in one transaction."""
        t = time.time() if t is None else t
        text = detail if detail is None or isinstance(detail, str) else json.dumps(detail, default=str)
        fields = self._clean(fields)
        if set_state:
            fields["state"] = state
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction(), self._rolled(launch_id, fields):
            self.db.execute("INSERT INTO events (launch_id, t, state, detail) VALUES (?, ?, ?, ?)", (launch_id, t, state, text))
            self.db.execute(f"UPDATE launches SET {sets} WHERE id = ?", [*fields.values(), launch_id])

    def finish(self, launch_id: str, state: str, reason: str, t: Optional[float] = None) -> None:
        """End a launch and freeze its cost estimate, so reports never replay finished timelines."""
        t = time.time() if t is None else t
        self.event(launch_id, state, reason, t=t, ended_at=t, end_reason=reason)
        est = estimate(self.get(launch_id), self.events(launch_id))
        self.update(launch_id, gpu_seconds=est["gpu_seconds"], storage_seconds=est["storage_seconds"], cost_usd=est["cost_usd"])

    def record_stage(self, launch_id: str, name: str, start: float, end: Optional[float] = None, rc: Optional[int] = None) -> None:
        """A stage's wall time as the instance reported it (its start identifies it across updates)."""
        with self.transaction(), self._rolled(launch_id):
            self.db.execute(
                "INSERT OR REPLACE INTO stages (launch_id, name, start, end, rc) VALUES (?, ?, ?, ?, ?)",
                (launch_id, name, start, end, rc),
            )

    def stages(self, launch_id: Optional[str] = None, since: Optional[float] = None, until: Optional[float] = None) -> list[dict]:
        """Stage times of one launch, or of the launches created in a window."""
        if launch_id is not None:
            where, args = "launch_id = ?", [launch_id]
        else:
            window, args = window_clause(since, until)
            where = "launch_id IN (SELECT id FROM launches WHERE 1=1" + window + ")"
        sql = f"SELECT launch_id, name, start, end, rc FROM stages WHERE {where} ORDER BY launch_id, start"
        return [dict(r) for r in self.db.execute(sql, args)]

    def instance_ids(self, launch_id: str) -> list[int]:
        """Every instance a launch created (a launch may try several offers)."""
        ids = []
        for ev in self.events(launch_id):
            if ev["state"] == "created" and ev["detail"]:
                try:
                    iid = json.loads(ev["detail"]).get("instance_id")
                except (json.JSONDecodeError, AttributeError):
                    iid = None
                if iid and iid not in ids:
                    ids.append(int(iid))
        row = self.get(launch_id)
        if row and row.get("instance_id") and row["instance_id"] not in ids:
            ids.append(int(row["instance_id"]))
        return ids

    def get(self, launch_id: str) -> Optional[dict]:
        row = self.db.execute("SELECT * FROM launches WHERE id = ?", (launch_id,)).fetchone()
        return self._row(row) if row else None

    def find(self, prefix: str) -> Optional[dict]:
        """A launch by id, id prefix, or instance id."""
        row = self.db.execute("SELECT * FROM launches WHERE id = ?", (prefix,)).fetchone()
        if row is None and prefix.isascii() and prefix.isdigit() and int(prefix) < 2**63:  # SQLite integers are 64-bit
            row = self.db.execute("SELECT * FROM launches WHERE instance_id = ? ORDER BY created_at DESC", (int(prefix),)).fetchone()
        if row is None and prefix:
            # A plain prefix: LIKE would take `%` and `_` in what the user typed as wildcards.
            rows = self.db.execute(
                "SELECT * FROM launches WHERE substr(id, 1, ?) = ? ORDER BY created_at DESC", (len(prefix), prefix)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return self._row(row) if row else None

    def by_instance(self, instance_id: int) -> Optional[dict]:
        row = self.db.execute("SELECT * FROM launches WHERE instance_id = ? ORDER BY created_at DESC", (instance_id,)).fetchone()
        return self._row(row) if row else None

    def recent(
        self,
        limit: Optional[int] = 20,
        since: Optional[float] = None,
        states: tuple = (),
        name: Optional[str] = None,
        group: Optional[str] = None,
    ) -> list[dict]:
        """What `status` shows: the open launches and the `limit` most recent ones (None: all) that match
        the filters, oldest first; read through indexes, whatever the ledger's size."""
        where, args = [], []
        if since is not None:
            where, args = where + ["created_at >= ?"], args + [since]
        if states:
            where, args = where + [f"state IN ({', '.join('?' * len(states))})"], args + list(states)
        if name:
            where, args = where + ["name GLOB ?"], args + [name]
        if group:
            where, args = where + ["wandb_group = ?"], args + [group]
        cond = " AND ".join(where) or "1"
        latest = f"SELECT * FROM launches WHERE {cond} ORDER BY created_at DESC" + (" LIMIT ?" if limit is not None else "")
        found = {r["id"]: r for r in self.db.execute(latest, args + ([limit] if limit is not None else []))}
        terminal = sorted(TERMINAL)
        open_now = f"SELECT * FROM launches WHERE ended_at IS NULL AND state NOT IN ({', '.join('?' * len(terminal))}) AND {cond}"
        found.update((r["id"], r) for r in self.db.execute(open_now, terminal + args))
        return [self._row(r) for r in sorted(found.values(), key=lambda r: r["created_at"])]

    def matching(
        self, since: Optional[float] = None, states: tuple = (), name: Optional[str] = None, group: Optional[str] = None
    ) -> Iterator[dict]:
        """Every launch that matches `status`'s filters, oldest first, read as it is used (`status --all` of a
        million launches holds one chunk at a time)."""
        where, args = ["1"], []
        for cond, values in (
            ("created_at >= ?", [since] if since is not None else []),
            (f"state IN ({', '.join('?' * len(states))})", list(states)),
            ("name GLOB ?", [name] if name else []),
            ("wandb_group = ?", [group] if group else []),
        ):
            if values:
                where, args = where + [cond], args + values
        for r in self.db.execute(f"SELECT * FROM launches WHERE {' AND '.join(where)} ORDER BY created_at", args):
            yield self._row(r)

    def stages_of(self, launch_ids: list[str]) -> dict[str, list[dict]]:
        """The stages of several launches in one query, each launch's in order."""
        out: dict[str, list[dict]] = {lid: [] for lid in launch_ids}
        sql = f'SELECT launch_id, name, start, "end", rc FROM stages WHERE launch_id IN ({", ".join("?" * len(launch_ids))})'
        cur = self.db.execute(sql, launch_ids) if launch_ids else None
        if cur is not None:
            cur.row_factory = None
            for lid, name, start, end, rc in cur:
                out[lid].append({"launch_id": lid, "name": name, "start": start, "end": end, "rc": rc})
        for stages in out.values():
            stages.sort(key=lambda st: st["start"])
        return out

    def launches(self, since: Optional[float] = None, until: Optional[float] = None, active_only: bool = False) -> list[dict]:
        window, args = window_clause(since, until)
        sql = "SELECT * FROM launches WHERE 1=1" + window
        if active_only:  # an open row has no ended_at (finish sets it, reopen clears it): the partial index finds them
            sql += f" AND ended_at IS NULL AND state NOT IN ({', '.join('?' * len(TERMINAL))})"
            args.extend(sorted(TERMINAL))
        sql += " ORDER BY created_at"
        return [self._row(r) for r in self.db.execute(sql, args).fetchall()]

    def kept_log_lines(self, launch_id: str) -> list[str]:
        """The last lines of an instance's log that its follower kept (`log_tail`), for after it is gone."""
        row = self.db.execute(
            "SELECT detail FROM events WHERE launch_id = ? AND state = 'log_tail' ORDER BY t DESC, id DESC LIMIT 1", (launch_id,)
        ).fetchone()
        return list(json.loads(row[0]).get("lines") or []) if row and row[0] else []

    def events(self, launch_id: str) -> list[dict]:
        rows = self.db.execute("SELECT t, state, detail FROM events WHERE launch_id = ? ORDER BY t, id", (launch_id,)).fetchall()
        return [dict(r) for r in rows]

    @staticmethod
    def _clean(fields: dict) -> dict:
        unknown = set(fields) - COLUMNS
        if unknown:
            raise KeyError(f"unknown ledger columns {sorted(unknown)}")
        if isinstance(fields.get("extra"), (dict, list)):
            fields = dict(fields, extra=json.dumps(fields["extra"]))
        return fields

    @staticmethod
    def _row(row: sqlite3.Row) -> dict:
        d = dict(row)
        if d.get("extra"):
            try:
                d["extra"] = json.loads(d["extra"])
            except (TypeError, json.JSONDecodeError):
                pass
        return d

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
