"""A team's year of launches: the ledger's schema versioned and migrated in place, and `status` that shows
the open and the most recent launches of a large ledger, with filters, and never draws thousands of rows."""

import json
import os
import sqlite3
import sys
import time

import pytest
from conftest import PROJECT, invoke

from vast_launch.errors import UserError
from vast_launch.ledger import Ledger
from vast_launch.ledger_schema import SCHEMA_VERSION

# The ledger as the release before versioning wrote it (PRAGMA user_version 0), with its one-target index.
UNVERSIONED = """CREATE TABLE IF NOT EXISTS launches (
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
CREATE INDEX launches_unbilled ON launches(created_at) WHERE billed_usd IS NULL AND target = 'vast';
INSERT INTO launches (id, created_at, updated_at, state, target, cost_usd) VALUES ('old-1', 1.0, 2.0, 'destroyed', 'vast', 0.5);
"""


def _indexes(path) -> set:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")}


def test_an_unversioned_ledger_is_migrated_in_place_and_keeps_its_launches(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(UNVERSIONED)
    with Ledger(path) as ledger:
        assert ledger.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert ledger.get("old-1")["cost_usd"] == 0.5 and ledger.get("old-1")["state"] == "destroyed"
        # the old ledger's ended launch is in the cost rollup it gained
        assert [tuple(r) for r in ledger.db.execute("SELECT launches, cost_usd FROM cost_rollup WHERE dim = 'all'")] == [(1, 0.5)]
    assert {"launches_open", "launches_unbilled_by_target", "launches_group", "launches_unfrozen"} <= _indexes(path)
    assert "launches_unbilled" not in _indexes(path)
    os.chmod(path, 0o400)  # at its version nothing is written: a read-only ledger still reads
    try:
        with Ledger(path, create=False) as ledger:
            assert [r["id"] for r in ledger.recent()] == ["old-1"]
    finally:
        os.chmod(path, 0o600)


def test_a_first_release_ledger_gains_the_cost_columns(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = UNVERSIONED.replace(
        ",\n    gpu_seconds REAL, storage_seconds REAL, cost_usd REAL,\n    billed_usd REAL, billed_at REAL", ""
    )
    first = (
        first.split("CREATE INDEX launches_unbilled")[0]
        + "INSERT INTO launches (id, created_at, updated_at, state) VALUES ('v0', 1, 1, 'aborted');"
    )
    assert "cost_usd REAL" not in first
    with sqlite3.connect(path) as db:
        db.executescript(first)
    with Ledger(path) as ledger:
        columns = {r[1] for r in ledger.db.execute("PRAGMA table_info(launches)")}
        assert {"gpu_seconds", "storage_seconds", "cost_usd", "billed_usd", "billed_at"} <= columns
        assert ledger.get("v0")["state"] == "aborted"


def test_a_ledger_from_a_newer_release_is_refused_not_changed(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UserError, match="newer than this vast-launch"):
        Ledger(path)


@pytest.fixture
def year(tmp_path):
    """500 launches over 30 days, 6 of them still open."""
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from cost_report import generate_ledger

    with Ledger() as ledger:
        generate_ledger(ledger, 500, seed=3, now=time.time(), active=6)
        rows = ledger.launches()
    return rows


def _status(tmp_path, *args):
    p = invoke(["status", "--json", *args], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def test_status_shows_the_open_launches_and_the_most_recent_ones(tmp_path, year):
    newest = {r["id"] for r in sorted(year, key=lambda r: -r["created_at"])[:20]}
    open_ones = {r["id"] for r in year if r["state"] == "running"}
    assert len(open_ones) == 6 and not open_ones <= newest  # some open launches are older than the 20 newest
    shown, warnings = _status(tmp_path)
    assert {o["launch_id"] for o in shown} == newest | open_ones
    assert [o["created_at"] for o in shown] == sorted(o["created_at"] for o in shown)  # oldest first
    # the open rows could not be settled (no API key here): one line says so, not one per launch
    assert warnings.count("warning:") == 1 and "open launches not settled" in warnings, warnings
    every = _status(tmp_path, "--all")[0]  # streamed a chunk at a time, ended launches at their frozen cost
    assert len(every) == 500
    by_id = {o["launch_id"]: o for o in every}
    for o in shown:
        assert {k: v for k, v in by_id[o["launch_id"]].items() if k != "cost_usd"} == {k: v for k, v in o.items() if k != "cost_usd"}
        assert abs(by_id[o["launch_id"]]["cost_usd"] - o["cost_usd"]) < 1e-3  # open ones estimated a moment apart
    assert len(_status(tmp_path, "--limit", "3")[0]) == len(
        {r["id"] for r in sorted(year, key=lambda r: -r["created_at"])[:3]} | open_ones
    )


def test_status_filters_by_state_name_group_and_age(tmp_path, year):
    shown, _ = _status(tmp_path, "--state", "running")
    assert {o["state"] for o in shown} == {"running"} and len(shown) == 6
    group = next(r["wandb_group"] for r in year if r["wandb_group"].startswith("sweep-"))
    shown, _ = _status(tmp_path, "--group", group, "--all")
    assert shown and {o["wandb_group"] for o in shown} == {group}
    assert len(_status(tmp_path, "--name", "burg*", "--all")[0]) == 500
    assert _status(tmp_path, "--name", "other*")[0] == []
    day_ago = time.time() - 86400
    shown = {o["launch_id"] for o in _status(tmp_path, "--since", "1d", "--all")[0]}
    surely_in = {r["id"] for r in year if r["created_at"] > day_ago + 60}
    maybe_in = {r["id"] for r in year if r["created_at"] > day_ago - 60}
    assert surely_in and surely_in <= shown <= maybe_in


def test_status_of_thousands_of_rows_is_written_as_plain_columns(tmp_path, year):
    p = invoke(["status", "--all"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["launch", "state", "stage"] and len(lines) == 501
    assert {ln.split()[0] for ln in lines[1:]} == {r["id"] for r in year}


def test_a_provider_that_does_not_answer_costs_one_short_wait_said_once(tmp_path, year, monkeypatch):
    """Six open launches to settle, a key, and a provider that accepts connections and never answers: one
    bounded wait (SETTLE_TIMEOUT_S, not a launch's retries), one line, and the rows shown as they are."""
    import socket
    import threading

    from vast_launch.vast.target import SETTLE_TIMEOUT_S

    silent = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    monkeypatch.setenv("VAST_API_KEY", "k" * 64)
    monkeypatch.setenv("VAST_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    t0 = time.monotonic()
    shown, warnings = _status(tmp_path, "--state", "running")
    waited = time.monotonic() - t0
    silent.close()
    assert len(shown) == 6 and {o["state"] for o in shown} == {"running"}
    lines = [ln for ln in warnings.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "6 open launches not settled" in lines[0] and "cannot reach" in lines[0], warnings
    assert waited < 6 * SETTLE_TIMEOUT_S  # one wait, not one per launch (each would be SETTLE_TIMEOUT_S)


def _rollup(db) -> list:
    rows = db.execute(
        "SELECT hour, target, dim, key, launches, cost_usd, billed_usd, unbilled, gpu_hours, billed_cost_usd FROM cost_rollup"
    )
    return sorted((*r[:4], r[4], *(round(v, 9) for v in r[5:])) for r in rows if r[4])


def test_the_cost_rollup_follows_every_write_that_changes_an_ended_launch(tmp_path):
    """After each write of the ledger's own, the rollup is what a rebuild from the launches would make."""
    from vast_launch import cost_rollup

    def same_as_rebuilt(led):
        kept = _rollup(led.db)
        with led.transaction():
            cost_rollup.rebuild(led.db)
        assert kept == _rollup(led.db)
        return kept

    t0 = time.time() - 7200
    with Ledger(tmp_path / "ledger.sqlite") as led:
        led.create("a", "searching", target="vast", gpu_name="RTX 4090", num_gpus=2, wandb_group="g")
        led.event(
            "a", "creating", {"offer_id": 1, "dph_base": 1.0, "storage_dph": 0.1}, t=t0, dph_total=1.1, dph_base=1.0, storage_dph=0.1
        )
        led.event("a", "running", t=t0 + 10)
        led.record_stage("a", "operator", t0 + 20, t0 + 1000, 0)
        assert same_as_rebuilt(led) == []  # open: not in the rollup
        led.finish("a", "destroyed", "completed", t=t0 + 1200)
        assert {r[2] for r in same_as_rebuilt(led)} == {"all", "gpu", "stage"}
        led.record_stage("a", "diffusion_residual", t0 + 1000, t0 + 1100, 0)  # learnt from the store after the end
        assert "diffusion_residual" in {r[3] for r in same_as_rebuilt(led)}
        led.update("a", billed_usd=0.42, billed_at=time.time())  # the bill settles
        assert all(r[7] == 0 for r in same_as_rebuilt(led))
        led.reopen("a", {"attempt": 2})  # resumed on another instance: open again, out of the rollup
        assert same_as_rebuilt(led) == []
        led.event("a", "running", t=t0 + 1300)
        led.finish("a", "destroyed", "completed", t=t0 + 1500)
        (whole,) = [r for r in same_as_rebuilt(led) if r[2] == "all"]
        assert whole[4] == 1 and whole[5] == round(led.get("a")["cost_usd"], 9)
