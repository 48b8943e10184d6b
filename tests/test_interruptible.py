"""Interruptible (bid) instances as on Vast: billed at the bid, stopped when outbid (storage still billed,
the programs and the in-instance watchdog stopped with it), started again when the bid wins."""

import json
import os
import subprocess

import pytest
from conftest import BIN, cloud_env, no_live_processes, stage_config
from test_cost import invoice_total, stamped_within
from test_lifecycle import read_until, start_cli, status_rows

OFFER = {"dph_base": 3.6, "min_bid": 1.0, "storage_cost": 36.0}  # storage: $1.00/h for 20 GB
BID = 1.5


def bid_config(tmp_path, **lifecycle):
    go = tmp_path / "go"
    stages = [{"name": "a", "command": "echo a"}, {"name": "b", "command": f"while [ ! -e {go} ]; do sleep 0.1; done"}]
    resources = {"interruptible": True, "bid_price": BID, "disk_gb": 20}
    return go, stage_config(stages, resources=resources, lifecycle={"max_hours": 1, **lifecycle})


def vastai(lc, *args):
    env = dict(os.environ, VAST_URL=lc.url, VAST_API_KEY=lc.api_key, VASTAI_NO_UPDATE_CHECK="1")
    return subprocess.run([str(BIN / "vastai"), *args], env=env, capture_output=True, text=True, timeout=600)


def test_an_outbid_instance_pauses_resumes_where_it_was_and_costs_what_was_billed(repo_factory, cloud, tmp_path):
    for oid in cloud.cloud.offers:
        cloud.cloud.set_offer(oid, **OFFER)
    go, config = bid_config(tmp_path)
    repo = repo_factory(config)
    args = ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow", "--poll-seconds", "0.05"]
    proc = start_cli(args, repo, cloud_env(cloud))
    try:
        shown = read_until(proc, "stage 2/2")
        (inst,) = cloud.cloud.instances.values()
        assert inst.bid == BID and inst.row()["is_bid"] and f"${BID + 1.0:.3f}/h bid" in shown, shown[-2000:]
        cloud.cloud.outbid(inst.id, winning_bid=2.0)
        read_until(proc, "is stopped (outbid")
        assert inst.status == "stopped" and inst.starts == 1
        go.touch()
        cloud.cloud.bid_lost_its_rival(inst.id)  # the higher bidder's job ended: the container starts again
        out = proc.communicate(timeout=900)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert inst.starts == 2 and inst.status == "destroyed" and inst.destroyed_by == "instance"
    assert "stage 1/2 a: already done" in inst.log_path.read_text()  # the restart resumed after the finished stage
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert abs(row["dph_total"] - (BID + 1.0)) < 1e-9  # billed at the bid, not the offer's on-demand $3.60
    billed = invoice_total(cloud, inst.id)
    p = subprocess.run(
        [str(BIN / "vast-launch"), "cost", "--format", "json"],
        cwd=repo,
        env={**os.environ, **cloud_env(cloud)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    (cost,) = json.loads(p.stdout)["rows"]
    print(f"estimate ${cost['cost_usd']:.6f}  billed ${billed:.6f}")
    # the paused interval billed storage only, in the estimate as on the bill
    assert abs(cost["cost_usd"] - billed) <= max(0.01 * billed, (BID + 1.0) / 3600 * (1 + stamped_within(cost)))
    assert no_live_processes(cloud)


@pytest.mark.slow
def test_an_instance_outbid_until_its_deadline_is_destroyed_by_the_launcher(repo_factory, cloud, tmp_path):
    """Stopped, the in-instance watchdog cannot act: the following launcher keeps the hard deadline."""
    for oid in cloud.cloud.offers:
        cloud.cloud.set_offer(oid, **OFFER)
    _, config = bid_config(tmp_path, max_hours=0.03)  # 108 s
    repo = repo_factory(config)
    proc = start_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], repo, cloud_env(cloud))
    try:
        read_until(proc, "stage 2/2")
        (inst,) = cloud.cloud.instances.values()
        cloud.cloud.outbid(inst.id, winning_bid=2.0)
        read_until(proc, "is stopped (outbid")
        # `vastai change bid` (the real CLI) with a bid that still loses: it stays stopped
        p = vastai(cloud, "change", "bid", str(inst.id), "--price", "1.8")
        assert p.returncode == 0 and "Failed" not in p.stdout + p.stderr, p.stdout + p.stderr
        assert inst.bid == 1.8 and inst.status == "stopped" and inst.outbid
        out = proc.communicate(timeout=900)[0]
    finally:
        proc.kill()
    assert proc.returncode == 124, out[-3000:]
    assert inst.status == "destroyed" and inst.destroyed_by == "account", inst.destroyed_by
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "hard deadline passed while the instance was stopped; destroyed by the launcher", row
    assert no_live_processes(cloud)


def test_a_winning_bid_starts_an_outbid_instance_again(cloud):
    """`vastai change bid` as the CLI sends it: no price means a winning one."""
    offer = next(iter(cloud.cloud.offers))
    inst = cloud.cloud.create(offer, {"image": "x", "onstart": "sleep 600", "price": 0.4})
    assert cloud.wait_until(lambda: inst.status == "running", 60)
    cloud.cloud.outbid(inst.id, winning_bid=0.9)
    assert inst.status == "stopped" and inst.row()["status_msg"].startswith("outbid")
    assert vastai(cloud, "start", "instance", str(inst.id)).returncode == 0
    assert inst.status == "stopped"  # a start does not beat a higher bid
    assert vastai(cloud, "change", "bid", str(inst.id)).returncode == 0
    assert inst.status == "running" and inst.bid == 0.9 and inst.gpu_dph == 0.9 and inst.starts == 2
    cloud.cloud.destroy(inst.id, by="test")
    assert no_live_processes(cloud)
