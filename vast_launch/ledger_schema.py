"""The ledger's tables, numbered: each release that changes them adds a step to MIGRATIONS, and a ledger
opened at an older version is brought up to date in place (ledger.Ledger._prepare)."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS launches (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    name TEXT, config_path TEXT, config_hash TEXT, profile TEXT,
    commit_sha TEXT, repo TEXT, target TEXT, provider_url TEXT,
    offer_id INTEGER, machine_id INTEGER, gpu_name TEXT, num_gpus INTEGER,
    dph_total REAL, dph_base REAL, storage_dph REAL,
    instance_id INTEGER, label TEXT,
    wandb_project TEXT, wandb_group TEXT,
    state TEXT NOT NULL, deadline REAL,
    ended_at REAL, end_reason TEXT,
    extra TEXT,
    gpu_seconds REAL, storage_seconds REAL, cost_usd REAL,
    billed_usd REAL, billed_at REAL
);
CREATE TABLE IF NOT EXISTS stages (
    launch_id TEXT NOT NULL REFERENCES launches(id),
    name TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    rc INTEGER,
    PRIMARY KEY (launch_id, name, start)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    launch_id TEXT NOT NULL REFERENCES launches(id),
    t REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_launch ON events(launch_id, t);
CREATE INDEX IF NOT EXISTS launches_created ON launches(created_at);
CREATE INDEX IF NOT EXISTS launches_instance ON launches(instance_id);
"""

COLUMNS = {
    "name",
    "config_path",
    "config_hash",
    "profile",
    "commit_sha",
    "repo",
    "target",
    "provider_url",
    "offer_id",
    "machine_id",
    "gpu_name",
    "num_gpus",
    "dph_total",
    "dph_base",
    "storage_dph",
    "instance_id",
    "label",
    "wandb_project",
    "wandb_group",
    "state",
    "deadline",
    "ended_at",
    "end_reason",
    "extra",
    "gpu_seconds",
    "storage_seconds",
    "cost_usd",
    "billed_usd",
    "billed_at",
}
# Columns added after the first release; older ledgers get them on open.
ADDED_COLUMNS = {"gpu_seconds": "REAL", "storage_seconds": "REAL", "cost_usd": "REAL", "billed_usd": "REAL", "billed_at": "REAL"}


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _add_cost_columns(db: sqlite3.Connection) -> None:
    have = {r[1] for r in db.execute("PRAGMA table_info(launches)")}
    for col, kind in ADDED_COLUMNS.items():
        if col not in have:
            db.execute(f"ALTER TABLE launches ADD COLUMN {col} {kind}")


def _index_for_status_and_cost(db: sqlite3.Connection) -> None:
    # Launches whose bill is not frozen yet (`cost` reconciles them), any target; the open ones (`status`
    # shows them whatever their age), few among a year of ended ones.
    db.execute("DROP INDEX IF EXISTS launches_unbilled")  # an older ledger's, for one target only
    db.execute("CREATE INDEX IF NOT EXISTS launches_unbilled_by_target ON launches(target, created_at) WHERE billed_usd IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS launches_open ON launches(created_at) WHERE ended_at IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS launches_group ON launches(wandb_group, created_at)")


def _cost_rollup(db: sqlite3.Connection) -> None:
    """Hourly rollups of the frozen launches' costs (cost_rollup.py), built once from what the ledger holds."""
    import sys

    from .cost_rollup import SCHEMA, rebuild

    db.execute(SCHEMA)
    db.execute("CREATE INDEX IF NOT EXISTS launches_unfrozen ON launches(created_at) WHERE cost_usd IS NULL")
    n = db.execute("SELECT count(*) FROM launches WHERE cost_usd IS NOT NULL").fetchone()[0]
    if n > 10_000:
        print(f"vast-launch: summing the cost of {n} ended launches by the hour (once, for fast cost reports)", file=sys.stderr)
    rebuild(db)


# The ledger's schema, numbered (PRAGMA user_version); an unnumbered ledger (0) is any earlier release's,
# and every step is written to apply to it whatever it already has.
MIGRATIONS = [(1, _create_tables), (2, _add_cost_columns), (3, _index_for_status_and_cost), (4, _cost_rollup)]
SCHEMA_VERSION = MIGRATIONS[-1][0]
