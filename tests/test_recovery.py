"""Interruptible launches that finish (lifecycle.recover): an instance outbid too long or gone without a result
is destroyed and the launch goes on on another instance, from its outputs store, while attempts and budget
last; finished stages do not run again."""

import time

import pytest
from conftest import cloud_env, no_live_processes, stage_config, wait_for
from test_interruptible import BID, OFFER
from test_lifecycle import read_until, start_cli, status_rows

from vast_launch.config import LaunchConfig
from vast_launch.protocol import STORE_EVENTS
from vast_launch.vast.instance_env import offer_deadline

ARGS = ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow", "--poll-seconds", "0.05"]


def recover_config(tmp_path, max_attempts=2, **lifecycle):
    go = tmp_path / "go"
    stages = [
        {"name": "a", "command": 'echo ran >> "$VL_OUT/a.txt"'},
        {"name": "b", "command": f"while [ ! -e {go} ]; do sleep 0.1; done; echo b-done"},
    ]
    config = stage_config(
        stages,
        resources={"interruptible": True, "bid_price": BID, "disk_gb": 20},
        lifecycle={"max_hours": 1, "recover": {"max_attempts": max_attempts, "stopped_minutes": 0}, **lifecycle},
        outputs={"url": f"file://{tmp_path / 'store'}"},
    )
    return go, config


def _priced(cloud):
    for oid in cloud.cloud.offers:
        cloud.cloud.set_offer(oid, **OFFER)


def _second_instance(cloud, first):
    assert wait_for(lambda: len(cloud.cloud.instances) == 2, 120), cloud.cloud.instances
    return next(i for i in cloud.cloud.instances.values() if i.id != first.id)


def _stored_stage_done(tmp_path, stage: str) -> bool:
    """The store holds the event of `stage` done (synced after the stage ends, beside the next one's start)."""
    return any(f"stage 1/2 {stage}: done" in f.read_text() for f in (tmp_path / "store").glob(f"*/{STORE_EVENTS}"))


def _ran_once(tmp_path, launch_id):
    return (tmp_path / "store" / launch_id / "out" / "a.txt").read_text() == "ran\n"


@pytest.mark.parametrize("how", ["outbid", "destroyed"])
def test_an_instance_outbid_too_long_or_lost_is_replaced_and_the_launch_completes(repo_factory, cloud, tmp_path, how):
    _priced(cloud)
    go, config = recover_config(tmp_path)
    repo = repo_factory(config)
    proc = start_cli(ARGS, repo, cloud_env(cloud))
    try:
        out = read_until(proc, "stage 2/2 b")
        (first,) = cloud.cloud.instances.values()
        assert wait_for(lambda: _stored_stage_done(tmp_path, "a"), 120)  # what the next instance resumes from
        if how == "outbid":
            cloud.cloud.outbid(first.id, winning_bid=2.0)
        else:
            cloud.cloud.destroy(first.id, by="console")  # the host took it back, a teammate's console...
        out += read_until(proc, "attempt 2/2 on another offer")
        second = _second_instance(cloud, first)
        out += read_until(proc, "stage 2/2 b")
        go.touch()
        out += proc.communicate(timeout=900)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert first.status == "destroyed" and second.status == "destroyed" and second.destroyed_by == "instance"
    assert out.count("stage 1/2 a: already done, skipped") == 1, out[-3000:]  # the finished stage did not run again
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert row["attempt"] == 2 and row["max_attempts"] == 2
    assert _ran_once(tmp_path, row["launch_id"])
    assert no_live_processes(cloud)


def test_recovery_stops_when_the_attempts_run_out(repo_factory, cloud, tmp_path):
    _priced(cloud)
    go, config = recover_config(tmp_path, max_attempts=2)
    repo = repo_factory(config)
    proc = start_cli(ARGS, repo, cloud_env(cloud))
    try:
        read_until(proc, "stage 2/2 b")
        (first,) = cloud.cloud.instances.values()
        cloud.cloud.outbid(first.id, winning_bid=2.0)
        read_until(proc, "attempt 2/2")
        second = _second_instance(cloud, first)
        read_until(proc, "stage 2/2 b")
        cloud.cloud.outbid(second.id, winning_bid=2.0)
        out = proc.communicate(timeout=900)[0]
    finally:
        proc.kill()
    assert proc.returncode == 3, out[-3000:]  # ended without a result
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "destroyed" and row["end_reason"].endswith("recovery stopped: 2 of 2 attempts used"), row
    assert {i.status for i in cloud.cloud.instances.values()} == {"destroyed"} and len(cloud.cloud.instances) == 2
    assert no_live_processes(cloud)


def test_a_new_attempt_gets_what_is_left_of_the_budget():
    cfg = LaunchConfig.model_validate(
        stage_config(["a"], lifecycle={"max_hours": 10, "max_cost_usd": 3.0}, outputs={"url": "s3://bucket/p"})
    )
    now = time.time()
    assert offer_deadline(cfg, now, {"dph_total": 1.5}) == (int(now + 2 * 3600), "budget")
    assert offer_deadline(cfg, now, {"dph_total": 1.5}, spent_usd=2.25) == (int(now + 0.5 * 3600), "budget")
    assert offer_deadline(cfg, now, {"dph_total": 1.5}, spent_usd=5.0) == (int(now), "budget")  # nothing left


def test_recovery_needs_an_outputs_store():
    with pytest.raises(ValueError, match="lifecycle.recover needs outputs.url"):
        LaunchConfig.model_validate(stage_config(["a"], lifecycle={"recover": {"max_attempts": 2}}))
