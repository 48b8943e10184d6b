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


@pytest.mark.parametrize("how", ["outbid", "destroyed", "machine_taken", "host_offline", "exited"])
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
        elif how == "machine_taken":  # outbid by another renter who took the GPU: it could never start again
            cloud.cloud.take_machine(first.id)
        elif how == "host_offline":
            cloud.cloud.host_offline(first.id)
        elif how == "exited":  # its container ended without its teardown
            cloud.cloud.mark_exited(first.id)
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


def test_a_bid_the_machine_outgrew_before_create_is_destroyed_and_the_next_offer_rented(repo_factory, cloud, tmp_path):
    """Vast makes the instance stopped and answers an error naming it: the launcher destroys it and goes on."""
    _priced(cloud)
    cloud.cloud.faults.update({"min_bid_at_next_create": 2.0})
    config = stage_config(
        [{"name": "a", "command": "echo a"}],
        resources={"interruptible": True, "bid_price": BID, "disk_gb": 20},
        lifecycle={"max_hours": 1},
    )
    repo = repo_factory(config)
    proc = start_cli(ARGS, repo, cloud_env(cloud))
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out[-3000:]
    first = cloud.cloud.instances[min(cloud.cloud.instances)]
    assert first.status == "destroyed" and first.starts == 0 and first.destroyed_by == "account"
    assert f"create errored but made instance {first.id}: destroying it" in out, out[-3000:]
    assert len(cloud.cloud.instances) == 2 and no_live_processes(cloud)


DETACHED = ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach", "--poll-seconds", "0.05"]
WATCH = ["watch", "--until-done", "--interval", "0.2"]


def _detached_recoverable_launch(repo_factory, cloud, tmp_path):
    """(the file that lets stage b end, the repo, the first instance) of a detached launch with recovery on."""
    _priced(cloud)
    go, config = recover_config(tmp_path)
    repo = repo_factory(config)
    return go, repo, _detached_launch(repo, cloud, tmp_path)


def _detached_launch(repo, cloud, tmp_path):
    p = start_cli(DETACHED, repo, cloud_env(cloud))
    out = p.communicate(timeout=900)[0]
    assert p.returncode == 0 and "detached" in out, out[-3000:]
    (first,) = cloud.cloud.instances.values()
    assert wait_for(lambda: _stored_stage_done(tmp_path, "a"), 120)
    return first


def _second_attempt_running(cloud, first, tmp_path):
    second = _second_instance(cloud, first)
    assert wait_for(lambda: second.status == "running" and "stage 2/2 b" in _log(second), 300), _log(second)
    return second


def _log(inst) -> str:
    try:
        return inst.log_path.read_text(errors="replace")
    except OSError:
        return ""


def test_watch_recovers_a_detached_launch_outbid_too_long(repo_factory, cloud, tmp_path):
    go, repo, first = _detached_recoverable_launch(repo_factory, cloud, tmp_path)
    cloud.cloud.outbid(first.id, winning_bid=2.0)
    watch = start_cli(WATCH, repo, cloud_env(cloud))
    try:
        out = read_until(watch, "attempt 2/2 on another offer")
        _second_attempt_running(cloud, first, tmp_path)
        go.touch()
        out += watch.communicate(timeout=900)[0]
    finally:
        watch.kill()
    assert watch.returncode == 0, out[-3000:]
    assert "watching 0 open interruptible launch(es)" in out
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert row["attempt"] == 2 and _ran_once(tmp_path, row["launch_id"])
    assert {i.status for i in cloud.cloud.instances.values()} == {"destroyed"} and len(cloud.cloud.instances) == 2
    assert no_live_processes(cloud)


def test_a_watch_killed_mid_recovery_and_restarted_neither_leaks_nor_rents_twice(repo_factory, cloud, tmp_path):
    """Killed after its create reached the cloud and before the answer came back (so the ledger never learnt the
    new instance's id), a second watch finds the instance by its label and adopts it."""
    import signal

    go, repo, first = _detached_recoverable_launch(repo_factory, cloud, tmp_path)
    cloud.cloud.faults.update({"slow_create_answer_s": 30})
    cloud.cloud.outbid(first.id, winning_bid=2.0)
    watch = start_cli(WATCH, repo, cloud_env(cloud))
    try:
        out = read_until(watch, "attempt 2/2 on another offer")
        assert wait_for(lambda: len(cloud.cloud.instances) == 2, 120)
        watch.send_signal(signal.SIGKILL)
        watch.wait(timeout=60)
    finally:
        watch.kill()
    cloud.cloud.faults.update({"slow_create_answer_s": 0})
    second = _second_instance(cloud, first)
    again = start_cli(WATCH, repo, cloud_env(cloud))
    try:
        out += read_until(again, f"adopted instance {second.id}")
        assert wait_for(lambda: "stage 2/2 b" in _log(second), 300), _log(second)
        go.touch()
        out += again.communicate(timeout=900)[0]
    finally:
        again.kill()
    assert again.returncode == 0, out[-3000:]
    assert len(cloud.cloud.instances) == 2, out[-3000:]  # never a third
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert row["attempt"] == 2 and _ran_once(tmp_path, row["launch_id"])
    assert no_live_processes(cloud)


def test_two_watches_at_once_rent_one_instance(repo_factory, cloud, tmp_path):
    go, repo, first = _detached_recoverable_launch(repo_factory, cloud, tmp_path)
    cloud.cloud.outbid(first.id, winning_bid=2.0)
    watches = [start_cli(WATCH, repo, cloud_env(cloud)) for _ in range(2)]
    try:
        _second_attempt_running(cloud, first, tmp_path)
        go.touch()
        outs = [w.communicate(timeout=900)[0] for w in watches]
    finally:
        for w in watches:
            w.kill()
    assert [w.returncode for w in watches] == [0, 0], outs
    assert sum(o.count("attempt 2/2 on another offer") for o in outs) == 1, outs
    assert len(cloud.cloud.instances) == 2 and no_live_processes(cloud)


def test_reap_recover_moves_a_launch_whose_host_went_offline(repo_factory, cloud, tmp_path):
    from conftest import run_cli

    go, repo, first = _detached_recoverable_launch(repo_factory, cloud, tmp_path)
    cloud.cloud.host_offline(first.id)
    p = run_cli(["reap", "--yes", "--recover"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stdout + p.stderr  # recovered; nothing left to reap
    assert f"instance {first.id} offline without a result: attempt 2/2" in p.stdout, p.stdout
    second = _second_attempt_running(cloud, first, tmp_path)
    go.touch()
    assert wait_for(lambda: second.status == "destroyed", 300)
    (row,) = status_rows(repo, cloud_env(cloud))  # settled from the store's result.json
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert no_live_processes(cloud)


def test_a_status_while_nobody_watches_leaves_a_lost_launch_open_for_recovery(repo_factory, cloud, tmp_path):
    go, repo, first = _detached_recoverable_launch(repo_factory, cloud, tmp_path)
    cloud.cloud.destroy(first.id, by="console")
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "gone" and "waiting for recovery" in row["end_reason"], row
    watch = start_cli(WATCH, repo, cloud_env(cloud))
    try:
        read_until(watch, f"instance {first.id} gone without a result: attempt 2/2")
        _second_attempt_running(cloud, first, tmp_path)
        go.touch()
        out = watch.communicate(timeout=900)[0]
    finally:
        watch.kill()
    assert watch.returncode == 0, out[-3000:]
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "destroyed" and row["end_reason"].startswith("completed"), row


def test_the_budget_covers_every_attempt_and_runs_out_on_the_second(repo_factory, cloud, tmp_path):
    """max_cost_usd $0.04 at $2.50/h buys 58 s: the first instance spends part of it before it is outbid; the
    second gets what is left as its in-instance deadline, and its watchdog ends the launch when it runs out."""
    from vast_launch.protocol import ACK_WAIT_SECONDS

    _priced(cloud)
    budget, rate = 0.04, BID + 1.0
    go, config = recover_config(tmp_path, max_attempts=3, max_cost_usd=budget)
    config["outputs"]["final_sync_timeout_s"] = 5  # the watchdog fires this (+5 s) before the deadline
    repo = repo_factory(config)
    proc = start_cli(ARGS, repo, cloud_env(cloud))
    try:
        read_until(proc, "stage 2/2 b")
        (first,) = cloud.cloud.instances.values()
        cloud.cloud.outbid(first.id, winning_bid=2.0)
        out = read_until(proc, "attempt 2/3 on another offer")
        second = _second_instance(cloud, first)
        out += proc.communicate(timeout=900)[0]
    finally:
        proc.kill()
    assert proc.returncode == 124, out[-3000:]
    assert len(cloud.cloud.instances) == 2 and second.destroyed_by == "instance", out[-3000:]
    window = {i.id: float(i.env["VL_DEADLINE"]) - i.created_at for i in (first, second)}
    spent_first = first.charges()["total_usd"]
    assert window[first.id] <= budget / rate * 3600 + 1
    assert window[second.id] <= (budget - spent_first) / rate * 3600 + 2, (window, spent_first)
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "budget reached (lifecycle.max_cost_usd): destroyed by the in-instance watchdog", row
    billed = sum(i.charges()["total_usd"] for i in (first, second))
    assert billed < budget + (1 + ACK_WAIT_SECONDS + 5) * rate / 3600, billed
    assert no_live_processes(cloud)


def test_an_attempt_a_killed_supervisor_opened_but_never_rented_is_not_counted():
    from vast_launch.vast.attempts import attempts_used, stop_reason

    row = {"extra": {"attempt": 2}, "state": "creating"}
    opened = [{"state": "created", "t": 1}, {"state": "gone", "t": 2}, {"state": "resuming", "t": 3}, {"state": "creating", "t": 4}]
    assert attempts_used(row, opened) == 1
    assert attempts_used(row, [*opened, {"state": "created", "t": 5}]) == 2
    assert stop_reason(row, opened, max_attempts=2, max_cost_usd=None) is None  # the second attempt is still to come


def test_down_ends_a_lost_launch_that_waits_for_recovery(repo_factory, cloud, tmp_path):
    from conftest import run_cli

    _, repo, first = _detached_recoverable_launch(repo_factory, cloud, tmp_path)
    cloud.cloud.destroy(first.id, by="console")
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "gone", row
    p = run_cli(["down", row["launch_id"], "--yes"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stdout + p.stderr
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "destroyed" and row["end_reason"].endswith("not recovered: ended by `vast-launch down`"), row
    p = run_cli(["watch", "--once"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0 and "watching 0 open" in p.stdout, p.stdout + p.stderr
    assert len(cloud.cloud.instances) == 1  # nothing rented after down
