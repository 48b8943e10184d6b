"""Teardown that tells the truth: after every way a launch can end, no process, instance or ledger
row is left wrong. Real launcher processes, a real local cloud, real process trees, real signals.
"""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import BIN, cloud_env, leftover_processes, run_cli, stage_config, wait_for


def status_rows(repo, env=None):
    p = run_cli(["status", "--json"], cwd=repo, env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def start_cli(args, cwd, env=None):
    e = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [str(BIN / "vast-launch"), *args],
        cwd=cwd,
        env=e,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def read_until(proc, text, timeout=900):
    """Lines the launcher printed, up to the first containing `text` (bounded by the event, not a sleep)."""
    seen = ""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ch = proc.stdout.read(1)  # a prompt ends without a newline
        if not ch:
            break
        seen += ch
        if seen.endswith(text):
            return seen
    raise AssertionError(f"never printed {text!r}:\n{seen[-3000:]}")


def instance_processes(home):
    """Processes of local instances: their environment carries the state dir (DATA_DIRECTORY, HOME)."""
    return leftover_processes(str(home / "local" / "cloud"))


# --- local launches: nothing left behind --------------------------------------------------------
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_local_launch_interrupted_leaves_no_process(repo_factory, tmp_path, how):
    """Ctrl-C, a kill and a closed terminal all end the instance first (completed and failed
    launches: the next test)."""
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    home = tmp_path / "home"
    proc = start_cli(["--local", "--config", "configs/test.yaml"], cwd=repo)
    read_until(proc, "stage 1/1")
    proc.send_signal(getattr(signal, how))
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 130, out[-3000:]
    assert wait_for(lambda: not instance_processes(home), 3.0), instance_processes(home)
    (row,) = status_rows(repo)
    assert row["state"] == "aborted" and row["end_reason"].startswith("interrupted"), row


def test_two_local_launches_in_a_row_each_report_their_own_outcome(repo_factory):
    repo = repo_factory(stage_config([{"name": "train", "command": 'echo "run $RC"; exit "$RC"'}]))
    home = repo.parent / "home"
    first = run_cli(["--local", "--config", "configs/test.yaml", "--env", "RC=3"], cwd=repo)
    assert first.returncode == 3, first.stdout[-2000:]
    assert wait_for(lambda: not instance_processes(home), 3.0), instance_processes(home)
    second = run_cli(["--local", "--config", "configs/test.yaml", "--env", "RC=0"], cwd=repo)
    assert second.returncode == 0, second.stdout[-2000:]
    assert wait_for(lambda: not instance_processes(home), 3.0), instance_processes(home)
    rows = status_rows(repo)
    assert [r["end_reason"].split(";")[0] for r in rows] == ["failed in stage train (exit 3)", "completed: all stages done"]
    assert rows[0]["instance_id"] != rows[1]["instance_id"]
    assert second.stdout.count("| run ") == 1 and "run 3" not in second.stdout  # no replay of the first
    assert not (repo / "runs").exists()  # outputs live under the state dir, not in the repo
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""


def test_config_auto_shutdown_is_the_default_and_the_flag_overrides_it(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}], lifecycle={"auto_shutdown": True}))
    p = run_cli(["--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stderr
    (inst,) = cloud.cloud.instances.values()
    assert inst.destroyed_by == "instance"  # the config's auto_shutdown reached the instance

    off = run_cli(["--no-auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env=cloud_env(cloud))
    assert off.returncode == 0, off.stderr
    assert "WARNING: auto-shutdown is OFF" in off.stdout and "keeps running and billing" in off.stdout
    second = max(cloud.cloud.instances.values(), key=lambda i: i.id)
    assert second.status == "running"  # as on Vast: the onstart ended, the container did not
    row = status_rows(repo, cloud_env(cloud))[-1]
    assert row["state"] == "running" and row["instance_id"] == second.id
    down = run_cli(["down", row["launch_id"]], cwd=repo, env=cloud_env(cloud))
    assert down.returncode == 0 and "destroyed (confirmed gone)" in down.stdout, down.stderr
    assert second.status == "destroyed" and second.destroyed_by == "account"
    assert status_rows(repo, cloud_env(cloud))[-1]["state"] == "destroyed"


def test_idle_limit_tears_down_a_finished_launch_without_auto_shutdown(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}], lifecycle={"auto_shutdown": False, "idle_minutes": 0.05}))
    p = run_cli(["--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stderr
    (inst,) = cloud.cloud.instances.values()
    assert wait_for(lambda: inst.status == "destroyed", 60)
    assert inst.destroyed_by == "instance"
    assert (next(inst.workdir.glob("vl-*")) / "deadline_hit").read_text().strip() == "idle"
    assert (next(inst.workdir.glob("vl-*")) / "result").read_text().startswith("rc=0 ")


def test_budget_becomes_the_deadline(repo_factory, tmp_path):
    from vast_launch.localcloud import LocalCloud

    # $3.60/h and a $0.004 budget: the money runs out after 4 s, long before max_hours.
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}], lifecycle={"max_hours": 1, "max_cost_usd": 0.004}))
    with LocalCloud(root=tmp_path / "c", price_dph=3.6, loading_seconds=0.1) as lc:
        p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env=cloud_env(lc))
        assert p.returncode == 124, p.stdout[-2000:]
        (inst,) = lc.cloud.instances.values()
        assert inst.destroyed_by == "instance"
        assert (next(inst.workdir.glob("vl-*")) / "deadline_hit").read_text().strip() == "budget"
        (row,) = status_rows(repo, cloud_env(lc))
        assert row["end_reason"] == "budget reached (lifecycle.max_cost_usd): destroyed by the in-instance watchdog"
        # At most the budget, plus the watchdog's 1 s clock, the follower's acknowledgement and the destroy.
        from vast_launch.protocol import ACK_WAIT_SECONDS

        assert inst.charges()["total_usd"] < 0.004 + (1 + ACK_WAIT_SECONDS + 5) * 3.6 / 3600


# --- the in-container layers ----------------------------------------------------------------------
def test_group_sigterm_still_ends_in_a_destroyed_instance(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stderr
    (inst,) = cloud.cloud.instances.values()
    vl = lambda: next(inst.workdir.glob("vl-*"))  # noqa: E731
    assert wait_for(lambda: "stage 1/1 a: start" in (vl() / "boot.log").read_text(), 60)
    cloud.cloud.signal_group(inst.id, signal.SIGTERM)  # what a host or Docker stop sends first
    assert wait_for(lambda: inst.status == "destroyed", 60)
    assert inst.destroyed_by == "instance"
    result = (vl() / "result").read_text()
    assert result.startswith("rc=143 failed_stage=a signal=TERM"), result


# --- the ledger after the launcher died ----------------------------------------------------------
@pytest.mark.slow
def test_sigkilled_launcher_row_is_settled_by_status(repo_factory, tmp_path):
    from vast_launch.localcloud import LocalCloud

    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 4"}]))
    with LocalCloud(root=tmp_path / "c", price_dph=3.6, loading_seconds=0.1) as lc:
        proc = start_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], repo, cloud_env(lc))
        read_until(proc, "stage 1/1")
        proc.kill()
        proc.wait()
        (inst,) = lc.cloud.instances.values()
        assert wait_for(lambda: inst.status == "destroyed", 60)  # the trap still tears down
        before = json.loads(run_cli(["status", "--json"], cwd=repo, env=cloud_env(lc)).stdout)
        (row,) = before
        assert row["state"] == "destroyed", row
        billed = inst.charges()["total_usd"]
        assert row["cost_usd"] <= billed * 1.2 + 1e-4, (row["cost_usd"], billed)  # stops when it vanished
        time.sleep(1)
        (again,) = json.loads(run_cli(["status", "--json"], cwd=repo, env=cloud_env(lc)).stdout)
        assert again["cost_usd"] == row["cost_usd"]  # frozen: it does not keep growing


def test_launcher_killed_before_the_id_was_recorded(repo_factory, cloud):
    """The crash window between create and the ledger write: found by label by status, down and reap."""
    import sqlite3

    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stderr
    (inst,) = cloud.cloud.instances.values()
    ledger = repo.parent / "home" / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:  # the row as a launcher killed right after create leaves it
        db.execute("UPDATE launches SET state = 'creating', instance_id = NULL, extra = json_set(extra, '$.launcher_pid', 999999999)")
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["instance_id"] == inst.id and row["state"] == "running"  # adopted by its label
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE launches SET state = 'creating', instance_id = NULL")
    down = run_cli(["down", row["launch_id"]], cwd=repo, env=cloud_env(cloud))
    assert down.returncode == 0 and f"instance {inst.id} destroyed" in down.stdout, down.stdout + down.stderr
    assert inst.status == "destroyed"
    assert status_rows(repo, cloud_env(cloud))[0]["state"] == "destroyed"


def test_reap_destroys_an_instance_whose_launch_the_ledger_thinks_ended(repo_factory, cloud):
    import sqlite3

    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    assert (
        run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud)).returncode
        == 0
    )
    (inst,) = cloud.cloud.instances.values()
    with sqlite3.connect(repo.parent / "home" / "ledger.sqlite") as db:
        db.execute("UPDATE launches SET state = 'aborted', end_reason = 'down: no instance was created'")
    p = run_cli(["reap", "--yes"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "its launch ended (aborted) but the instance still exists" in p.stdout
    assert inst.status == "destroyed"


def test_down_refuses_an_instance_that_is_not_ours(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    assert (
        run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud)).returncode
        == 0
    )
    (inst,) = cloud.cloud.instances.values()
    inst.label = "someone-elses-job"
    p = run_cli(["down", str(inst.id)], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 1 and "not destroyed" in p.stderr, p.stdout + p.stderr
    assert inst.status == "running"
    assert status_rows(repo, cloud_env(cloud))[0]["state"] == "running"  # nothing recorded as destroyed
    cloud.cloud.destroy(inst.id, by="test")


def test_down_of_a_finished_local_launch_sends_no_key(repo_factory):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}]))
    assert run_cli(["--local", "--config", "configs/test.yaml"], cwd=repo).returncode == 0
    (row,) = status_rows(repo)
    p = run_cli(["down", row["launch_id"]], cwd=repo, env={"VAST_API_KEY": "account-key-must-not-travel"})
    assert p.returncode == 0, p.stderr
    assert "ended with its launcher" in p.stdout


def test_ctrl_c_on_a_terminal_asks_and_detaching_leaves_the_teardown_armed(repo_factory, cloud):
    import pty

    repo = repo_factory(stage_config([{"name": "a", "command": 'while [ ! -f "$VL_W/go" ]; do sleep 0.2; done'}]))
    master, slave = pty.openpty()  # a real terminal on stdin: the launcher may ask
    e = {**os.environ, **cloud_env(cloud)}
    proc = subprocess.Popen(
        [str(BIN / "vast-launch"), "--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"],
        cwd=repo,
        env=e,
        text=True,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    os.close(slave)
    try:
        read_until(proc, "stage 1/1")
        proc.send_signal(signal.SIGINT)
        read_until(proc, "Destroy the instance now?")
        os.write(master, b"n\n")
        out = proc.communicate(timeout=600)[0]
    finally:
        os.close(master)
    assert proc.returncode == 130, out
    assert "detached:" in out and "vast-launch logs" in out
    (inst,) = cloud.cloud.instances.values()
    assert inst.status == "running"  # left running, not destroyed
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "running"
    next(inst.workdir.glob("vl-*")).joinpath("go").touch()  # the stage ends: the trap still tears down
    assert wait_for(lambda: inst.status == "destroyed", 60)
    assert inst.destroyed_by == "instance"


@pytest.mark.slow
def test_down_of_an_instance_already_gone_or_whose_destroy_is_lost(repo_factory, cloud):
    """`down` says what happened: an instance destroyed behind our back is 'already gone' (and the row
    follows); a destroy the cloud acknowledged but did not carry out is sent again until it is gone (one that
    never takes: test_shared_account)."""
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    for _ in range(2):
        assert (
            run_cli(
                ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud)
            ).returncode
            == 0
        )
    rows = {r["instance_id"]: r for r in status_rows(repo, cloud_env(cloud))}
    ids = sorted(rows)
    gone, lost = cloud.cloud.instances[ids[0]], cloud.cloud.instances[ids[1]]
    cloud.cloud.destroy(gone.id, by="console")  # destroyed in the web console
    p = run_cli(["down", rows[gone.id]["launch_id"]], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0 and f"instance {gone.id} was already gone" in p.stdout, p.stdout + p.stderr

    cloud.cloud.faults.update({"destroy_ignored": 1})
    p = run_cli(["down", rows[lost.id]["launch_id"], "--yes"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0 and f"instance {lost.id} destroyed (confirmed gone)" in p.stdout, p.stdout + p.stderr

    def sent():  # the cloud records a request once it has answered it
        return [e for e in cloud.cloud.events if e["method"] == "DELETE" and e["path"].rstrip("/").endswith(f"/instances/{lost.id}")]

    assert wait_for(lambda: len(sent()) == 2) and lost.status == "destroyed"  # the lost DELETE was sent again
    after = {r["instance_id"]: r["state"] for r in status_rows(repo, cloud_env(cloud))}
    assert after == {gone.id: "destroyed", lost.id: "destroyed"}, after


def test_ctrl_c_while_the_instance_loads_destroys_it(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}], lifecycle={"loading_timeout_minutes": 30}))
    cloud.cloud.faults.update({"loading_forever": True})  # the image pull that takes forever
    proc = start_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], repo, cloud_env(cloud))
    read_until(proc, "is loading")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 130, out[-3000:]
    (inst,) = cloud.cloud.instances.values()
    assert inst.status == "destroyed" and f"interrupted: destroying instance {inst.id}" in out, out[-3000:]
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "aborted" and row["end_reason"] == "interrupted before an instance was running", row


def test_a_second_ctrl_c_at_the_destroy_prompt_destroys(repo_factory, cloud):
    import pty

    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "vast-launch"), "--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"],
        cwd=repo,
        env={**os.environ, **cloud_env(cloud)},
        text=True,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    os.close(slave)
    try:
        read_until(proc, "stage 1/1")
        proc.send_signal(signal.SIGINT)
        read_until(proc, "Destroy the instance now?")
        proc.send_signal(signal.SIGINT)  # not swallowed: the impatient answer is the safe one
        out = proc.communicate(timeout=600)[0]
    finally:
        os.close(master)
    assert proc.returncode == 130, out
    (inst,) = cloud.cloud.instances.values()
    assert inst.status == "destroyed" and inst.destroyed_by == "account", out[-2000:]
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["state"] == "aborted"
