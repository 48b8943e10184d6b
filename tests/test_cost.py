"""Cost reports against the local cloud's own bill: real launches, real invoices, real ledger."""

import json
import os
import subprocess
import sys
import time

from conftest import BIN, PROJECT, cloud_env, run_cli, stage_config, wait_for

GPU_DPH = 3.60
STORAGE_COST = 36.0  # $/GB/month; with disk_gb 20 that is $1.00/h of storage
DISK_GB = 20
ALL_IN_DPH = GPU_DPH + STORAGE_COST * DISK_GB / 720


def priced(lc):
    for oid in lc.cloud.offers:
        lc.cloud.set_offer(oid, dph_base=GPU_DPH, storage_cost=STORAGE_COST)


def cost_json(repo, lc=None, *args):
    p = run_cli(["cost", "--format", "json", *args], cwd=repo, env=cloud_env(lc) if lc else None)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def invoice_total(lc, iid):
    return sum(r["amount"] for r in lc.cloud.invoice_rows() if r["instance_id"] == iid)


def stamped_within(row) -> float:
    """How far, at most, the follower's stamps of the launch's state changes are from the true moments."""
    from vast_launch.ledger import Ledger

    with Ledger() as ledger:
        details = [e["detail"] for e in ledger.events(row["launch_id"]) if (e["detail"] or "").startswith("{")]
    return sum(json.loads(d).get("within_s", 0) for d in details)


def test_launch_cost_matches_the_bill_and_ignores_later_price_changes(repo_factory, cloud):
    priced(cloud)
    repo = repo_factory(
        stage_config(
            [{"name": "operator", "command": "sleep 4"}, {"name": "diffusion_residual", "command": "sleep 2"}],
            resources={"disk_gb": DISK_GB},
        )
    )
    p = run_cli(
        ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow", "--poll-seconds", "0.05"],
        cwd=repo,
        env=cloud_env(cloud),
    )
    assert p.returncode == 0, p.stderr
    (inst,) = cloud.cloud.instances.values()
    billed = invoice_total(cloud, inst.id)
    report = cost_json(repo, cloud)
    (row,) = report["rows"]
    print(f"estimate ${row['cost_usd']:.6f}  billed ${billed:.6f}  difference {100 * (row['cost_usd'] - billed) / billed:+.3f} %")
    assert billed > 0.005
    # The follower stamps each state change at the midpoint of the two polls around it, and records how
    # close that is: within one second of billing plus that (the soak and the benchmark show the typical error).
    assert abs(row["cost_usd"] - billed) <= max(0.01 * billed, ALL_IN_DPH / 3600 * (1 + stamped_within(row)))
    assert row["billed_usd"] == billed  # reconciled from the invoice lines of this instance
    assert abs(row["difference_usd"] - (row["cost_usd"] - billed)) < 1e-9

    # Today's price is never used for yesterday's run.
    for oid in cloud.cloud.offers:
        cloud.cloud.set_offer(oid, dph_base=GPU_DPH * 10, storage_cost=STORAGE_COST * 10)
    again = cost_json(repo, cloud)["rows"][0]
    assert again["cost_usd"] == row["cost_usd"]

    # Stage attribution: each stage costs its wall time at the all-in rate; the rest is overhead.
    stages = {r["key"]: r for r in cost_json(repo, cloud, "--by", "stage")["rows"]}
    assert set(stages) == {"operator", "diffusion_residual", "(outside stages)"}
    from vast_launch.ledger import Ledger

    with Ledger() as ledger:  # the stage's own wall time, as the instance stamped it, at the all-in rate
        walls = {st["name"]: st["end"] - st["start"] for st in ledger.stages(row["launch_id"])}
    assert walls["operator"] >= 4 and walls["diffusion_residual"] >= 2  # sleep 4, sleep 2
    for name in ("operator", "diffusion_residual"):
        assert abs(stages[name]["cost_usd"] - walls[name] * ALL_IN_DPH / 3600) < 1e-9, name


def test_a_stopped_period_bills_storage_only(repo_factory, cloud, tmp_path):
    priced(cloud)
    repo = repo_factory(
        stage_config([{"name": "a", "command": '[ -f "$VL_W/resumed" ] || sleep 600; sleep 8'}], resources={"disk_gb": DISK_GB})
    )
    args = [
        str(BIN / "vast-launch"),
        "--auto-shutdown",
        "--config",
        "configs/test.yaml",
        "--yes",
        "--follow",
        "--poll-seconds",
        "0.05",
    ]
    env = {**os.environ, **cloud_env(cloud)}
    proc = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: any(i.status == "running" for i in cloud.cloud.instances.values()), 60)
        (inst,) = cloud.cloud.instances.values()
        assert wait_for(lambda: "stage 1/1 a: start" in inst.log_path.read_text(), 30)
        # The container is stopped as by the host or an outbid: its trap must not destroy it here.
        cloud.cloud.faults.update({"destroy_failures": 10_000})
        cloud.cloud.stop(inst.id)
        from vast_launch.ledger import Ledger

        with Ledger() as ledger:
            (launch,) = ledger.launches()
            assert wait_for(lambda: any(e["state"] == "stopped" for e in ledger.events(launch["id"])), 30)
            ev_stopped = [e for e in ledger.events(launch["id"]) if e["state"] == "stopped"][0]["t"]
            assert wait_for(lambda: time.time() - ev_stopped > 2.0, 10)
        cloud.cloud.faults.update({"destroy_failures": 0})
        next(inst.workdir.glob("vl-*")).joinpath("resumed").touch()
        cloud.cloud.start(inst.id)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    charges = inst.charges()
    stopped_s = sum(end - start for state, start, end in inst.segments if state == "stopped")
    assert stopped_s > 2.0
    row = cost_json(repo, cloud)["rows"][0]
    storage_only_est = row["storage_seconds"] - row["gpu_seconds"]
    storage_only_bill = charges["storage_seconds"] - charges["gpu_seconds"]
    print(
        f"stopped {stopped_s:.2f} s; storage-only seconds: estimate {storage_only_est:.2f}, "
        f"bill {storage_only_bill:.2f}; estimate ${row['cost_usd']:.6f} billed ${row['billed_usd']:.6f}"
    )
    # Each state change is stamped at the midpoint of the polls around it, and says how close that is:
    # on a loaded machine polls are slow, so the bound is what the follower itself measured.
    from vast_launch.ledger import Ledger

    with Ledger() as ledger:
        evs = ledger.events(row["launch_id"])
    i = next(k for k, e in enumerate(evs) if e["state"] == "stopped")
    after = next(e for e in evs[i + 1 :] if e["state"] in ("loading", "running"))
    slack = sum(json.loads(e["detail"])["within_s"] for e in (evs[i], after)) + 0.2
    assert storage_only_est >= stopped_s - slack  # the stopped period paid storage, not GPU
    assert abs(storage_only_est - storage_only_bill) < 0.5 + slack
    assert abs(row["cost_usd"] - row["billed_usd"]) <= max(0.01 * row["billed_usd"], ALL_IN_DPH / 3600 * (1 + stamped_within(row)))


def test_group_stage_gpu_and_day_totals_add_up_to_the_launch_totals(tmp_path):
    """A generated ledger (the same generator the benchmark uses): every grouping sums to one total."""
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from cost_report import generate_ledger

    from vast_launch.ledger import Ledger
    from vast_launch.reports import cost

    now = time.time()
    generate_ledger(Ledger(), 2000, seed=7, now=now)
    with Ledger() as ledger:
        by_launch = cost.build_report(ledger, "launch", now=now)
        total = sum(r["cost_usd"] for r in by_launch.rows)
        assert len(by_launch.rows) == 2000 and total > 0
        assert abs(by_launch.totals["cost_usd"] - total) < 1e-9
        for by in ("group", "stage", "gpu", "day"):
            rows = cost.build_report(ledger, by, now=now).rows
            assert abs(sum(r["cost_usd"] for r in rows) - total) < 1e-6 * total, by
            assert abs(sum(r["gpu_hours"] for r in rows) - by_launch.totals["gpu_hours"]) < 1e-6, by
        stage_rows = {r["key"] for r in cost.build_report(ledger, "stage", now=now).rows}
        assert {"operator", "diffusion_residual", "consistency_distill", "(outside stages)"} <= stage_rows


def test_cost_output_formats_and_bad_input(repo_factory, tmp_path):
    repo = repo_factory()
    for fmt in ("table", "csv", "json"):
        p = run_cli(["cost", "--format", fmt], cwd=repo)
        assert p.returncode == 0, p.stderr
    assert "no launches in this window" in run_cli(["cost"], cwd=repo).stdout
    bad = run_cli(["cost", "--since", "yesterday-ish"], cwd=repo)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "--since 'yesterday-ish'" in bad.stderr


class FakeSummary(dict):
    def update(self, values):  # HTTPSummary.update persists to the server; here it records
        super().update(values)


class FakeRun:
    def __init__(self, job_type):
        self.job_type, self.summary = job_type, FakeSummary()


class FakeApi:
    default_entity = "team"

    def __init__(self, runs):
        self.run_list, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return self.run_list


def test_sync_wandb_writes_each_stage_runs_share_of_the_cost(tmp_path):
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from cost_report import STAGES, generate_ledger

    from vast_launch.ledger import Ledger
    from vast_launch.reports import cost
    from vast_launch.reports.wandb_api import sync_cost_to_wandb

    with Ledger() as ledger:
        generate_ledger(ledger, 1, seed=3, active=0)
        (row,) = cost.build_report(ledger, "launch").rows
        runs = [FakeRun(s) for s in STAGES]
        api = FakeApi(runs)
        note = sync_cost_to_wandb(ledger, [row], api=api)
    assert note == "W&B: cost written into 3 run summaries"
    assert api.calls == [("team/ups-burgers", {"group": row["wandb_group"]})]
    stage_sum = sum(r.summary["cost_usd"] for r in runs)
    assert 0 < stage_sum <= row["cost_usd"] + 1e-6
    assert all(r.summary["dph_total"] == row["dph_total"] for r in runs)
    assert all(r.summary["launch_cost_usd"] == round(row["cost_usd"], 6) for r in runs)
    offline = sync_cost_to_wandb(None, [row])  # no WANDB_API_KEY here: nothing is attempted
    assert offline.startswith("W&B sync skipped")


def test_cost_formats_agree_on_a_ledger_with_real_rows(tmp_path):
    """table, CSV and JSON of the same generated ledger, parsed back: same launches, same dollars."""
    import csv
    import io

    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from cost_report import generate_ledger

    from vast_launch.ledger import Ledger

    generate_ledger(Ledger(), 40, seed=3, now=time.time())
    args = ["cost", "--since", "3650d", "--no-reconcile"]
    as_json = json.loads(run_cli([*args, "--format", "json"], cwd=tmp_path).stdout)
    as_csv = list(csv.DictReader(io.StringIO(run_cli([*args, "--format", "csv"], cwd=tmp_path).stdout)))
    table = run_cli([*args, "--format", "table"], cwd=tmp_path, env={"COLUMNS": "250"}).stdout
    assert len(as_json["rows"]) == len(as_csv) == 40
    assert [r["launch_id"] for r in as_csv] == [r["launch_id"] for r in as_json["rows"]]
    ended = 0
    for c, j in zip(as_csv, as_json["rows"]):
        assert c["state"] == j["state"]
        if j["state"] in ("destroyed", "failed", "aborted", "completed", "cancelled"):
            ended += 1
            assert abs(float(c["cost_usd"]) - j["cost_usd"]) < 1e-9  # frozen: identical in every format
        else:  # still running in the generated ledger: the CSV was asked later, so it costs a little more
            assert 0 <= float(c["cost_usd"]) - j["cost_usd"] < 1.0
    assert ended >= 20
    assert abs(sum(r["cost_usd"] for r in as_json["rows"]) - as_json["totals"]["cost_usd"]) < 1e-6
    assert "40 launches" in table and as_json["rows"][0]["launch_id"][:20] in table


def test_cost_limit_lists_the_most_recent_launches_and_the_totals_count_every_one(tmp_path):
    """A table lists a bounded number of rows (a year of launches is for json/csv), and says what it left out."""
    import csv
    import io

    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from cost_report import generate_ledger

    from vast_launch.ledger import Ledger

    led = Ledger()
    generate_ledger(led, 40, seed=4, now=time.time(), active=0)
    odd = 'team, "odd" name'  # a value the CSV must quote
    first = led.db.execute("SELECT id FROM launches ORDER BY created_at LIMIT 1").fetchone()[0]
    with led.db:
        led.db.execute("UPDATE launches SET wandb_group = ? WHERE id = ?", (odd, first))
    args = ["cost", "--since", "3650d", "--no-reconcile"]
    full = json.loads(run_cli([*args, "--format", "json"], cwd=tmp_path).stdout)
    assert len(full["rows"]) == 40 and not any("listed" in n for n in full["notes"])
    newest = [r["launch_id"] for r in full["rows"]][-5:]

    limited = json.loads(run_cli([*args, "--format", "json", "--limit", "5"], cwd=tmp_path).stdout)
    assert [r["launch_id"] for r in limited["rows"]] == newest  # oldest first, as without a limit
    assert limited["totals"] == full["totals"]
    assert any("the 5 most recent of 40 launches are listed" in n for n in limited["notes"])

    table = run_cli([*args, "--limit", "5"], cwd=tmp_path, env={"COLUMNS": "250"}).stdout
    shown = [r["launch_id"] for r in full["rows"] if r["launch_id"] in table]
    assert shown == newest and "40 launches" in table and "--limit 0 lists every one" in table
    every = run_cli([*args, "--limit", "0"], cwd=tmp_path, env={"COLUMNS": "250"}).stdout
    assert all(r["launch_id"] in every for r in full["rows"]) and "listed" not in every

    groups = json.loads(run_cli([*args, "--by", "group", "--format", "json"], cwd=tmp_path).stdout)
    top = json.loads(run_cli([*args, "--by", "group", "--format", "json", "--limit", "3"], cwd=tmp_path).stdout)
    assert top["rows"] == groups["rows"][:3] and len(groups["rows"]) > 3
    assert any("the 3 costliest rows are listed" in n for n in top["notes"])

    as_csv = list(csv.DictReader(io.StringIO(run_cli([*args, "--format", "csv"], cwd=tmp_path).stdout)))
    assert [r["wandb_group"] for r in as_csv] == [r["wandb_group"] or "" for r in full["rows"]]
    assert as_csv[0]["wandb_group"] == odd
    bad = run_cli([*args, "--limit", "-1"], cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def _close(a, b, what):
    if a is None or b is None:
        assert a is None and b is None, what
    else:
        assert abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)), (what, a, b)


def test_the_sql_report_agrees_with_the_python_one_on_a_random_ledger():
    """Every --by, on launches open and ended, billed and not, with bills just read, free launches, stages
    longer than their launch (clock skew), and SLURM rows that cost leaves out."""
    import random

    sys.path.insert(0, str(PROJECT / "benchmarks"))
    import cost_reference
    from cost_report import generate_ledger

    from vast_launch import cost_rollup
    from vast_launch.ledger import Ledger
    from vast_launch.reports import cost

    now = time.time()
    rng = random.Random(11)
    with Ledger() as ledger:
        generate_ledger(ledger, 1500, seed=5, now=now, active=40)
        ids = [r[0] for r in ledger.db.execute("SELECT id FROM launches")]
        with ledger.transaction():
            for lid in rng.sample(ids, 60):  # free launches (the local cloud)
                ledger.db.execute("UPDATE launches SET cost_usd = 0, dph_total = 0 WHERE id = ? AND cost_usd IS NOT NULL", (lid,))
            for lid in rng.sample(ids, 30):  # a stage that outlasts its launch
                ledger.db.execute('UPDATE stages SET "end" = "end" + 86400 WHERE launch_id = ? AND name = \'operator\'', (lid,))
            for lid in rng.sample(ids, 20):
                ledger.db.execute("UPDATE launches SET target = 'slurm' WHERE id = ?", (lid,))
            for lid in rng.sample(ids, 20):  # no group, and no instance yet
                ledger.db.execute("UPDATE launches SET wandb_group = '', gpu_name = NULL WHERE id = ?", (lid,))
            cost_rollup.rebuild(ledger.db)  # the rows were changed behind the ledger's back
        billed = {lid: rng.uniform(0, 5) for lid in rng.sample(ids, 50)}
        for since, until in (
            (None, None),
            (now - 10 * 86400, now - 2 * 86400),
            (now - 3 * 86400 - 1234.5, None),
            (now - 1800, now - 60),
        ):
            for by in cost.BY_CHOICES:
                got = cost.build_report(ledger, by, since, until, now=now, billed=billed, left_out=("slurm",))
                want_rows, want_totals = cost_reference.build_report(ledger, by, since, until, now=now, billed=billed)
                for key in want_totals:
                    _close(got.totals[key], want_totals[key], (by, key))
                key = "launch_id" if by == "launch" else "key"
                got_rows, want_by_key = list(got.rows), {r[key]: r for r in want_rows}
                assert sorted(r[key] for r in got_rows) == sorted(want_by_key), by
                for r in got_rows:
                    for field in ("cost_usd", "billed_usd", "gpu_hours") + (("launches",) if by != "launch" else ()):
                        _close(r[field], want_by_key[r[key]][field], (by, r[key], field))
