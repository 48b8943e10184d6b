"""Safe on a shared account: two ledgers (teammates, a laptop and CI) on one Vast account, `down` that wins
over a following launcher, destroys that are retried until confirmed, and names the launch owns."""

import json
import signal
import time

import pytest
import requests
from conftest import cloud_env, creates, run_cli, stage_config, wait_for
from test_lifecycle import read_until, start_cli

from vast_launch.protocol import RESERVED_ENV, label_for

SLEEP = [{"name": "a", "command": "sleep 600"}]


def rows(repo, env):
    p = run_cli(["status", "--json"], cwd=repo, env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def rent_by_hand(cloud, label: str, env: dict) -> int:
    """An instance some other launcher made (its label and env as that launcher would set them)."""
    body = {"image": "img", "disk": 10, "onstart": "sleep 600", "label": label, "env": env, "runtype": "ssh"}
    r = requests.put(f"{cloud.url}/api/v0/asks/1002/", json=body, headers={"Authorization": f"Bearer {cloud.api_key}"}, timeout=60)
    r.raise_for_status()
    return int(r.json()["new_contract"])


def test_reap_in_one_ledger_leaves_anothers_live_launch_alone_and_reaps_abandoned_ones(repo_factory, cloud, tmp_path):
    repo = repo_factory(stage_config(SLEEP))
    alice = {**cloud_env(cloud), "VAST_LAUNCH_HOME": str(tmp_path / "alice")}
    bob = {**cloud_env(cloud), "VAST_LAUNCH_HOME": str(tmp_path / "bob"), "VAST_LAUNCH_WORKSPACE": "bob-ci"}
    p = run_cli(["--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=alice)
    assert p.returncode == 0, p.stderr
    (live,) = cloud.cloud.instances.values()
    assert wait_for(lambda: live.status == "running", 60)
    now = time.time()
    # a teammate's instance whose own layers failed, an hour past its deadline; and one labeled before
    # labels named a workspace, whose env still says its deadline
    abandoned = rent_by_hand(cloud, label_for("carol-20261201-000000-aaaa", "carol-laptop", now - 3600), {})
    old_style = rent_by_hand(cloud, "vast-launch:dave-20261201-000000-bbbb", {"VL_DEADLINE": str(int(now - 3600))})
    young = rent_by_hand(cloud, label_for("erin-20261201-000000-cccc", "erin-laptop", now + 3600), {})
    assert wait_for(lambda: all(cloud.cloud.instances[i].status == "running" for i in (abandoned, old_style, young)), 60)

    dry = run_cli(["reap", "--dry-run"], cwd=repo, env=bob)
    assert dry.returncode == 2, dry.stdout + dry.stderr
    assert f"would destroy instance {abandoned} " in dry.stdout and "workspace carol-laptop's, past its own deadline" in dry.stdout
    assert f"would destroy instance {old_style} " in dry.stdout and "its label names no workspace" in dry.stdout
    for iid in (live.id, young):
        assert f"left alone: instance {iid} " in dry.stdout and "its own teardown is still armed" in dry.stdout, dry.stdout

    p = run_cli(["reap", "--yes"], cwd=repo, env=bob)
    assert p.returncode == 2, p.stdout + p.stderr
    states = {i.id: i.status for i in cloud.cloud.instances.values()}
    assert states == {live.id: "running", abandoned: "destroyed", old_style: "destroyed", young: "running"}, states
    assert rows(repo, alice)[0]["state"] == "running"  # the owner's ledger: still its healthy launch

    forced = run_cli(["reap", "--dry-run", "--all-workspaces"], cwd=repo, env=bob)
    assert f"would destroy instance {live.id} " in forced.stdout and "(--all-workspaces)" in forced.stdout, forced.stdout
    assert run_cli(["reap", "--yes"], cwd=repo, env=alice).returncode == 0  # its own launch is healthy; erin's is armed
    assert live.status == "running" and cloud.cloud.instances[young].status == "running"
    assert run_cli(["down", "--all", "--yes"], cwd=repo, env=bob).stdout.strip() == ""  # bob's ledger owns nothing
    assert live.status == "running"
    assert run_cli(["down", "--all", "--yes"], cwd=repo, env=alice).returncode == 0
    assert live.status == "destroyed" and cloud.cloud.instances[young].status == "running"
    cloud.cloud.destroy(young, by="test")


@pytest.mark.parametrize("name", sorted(RESERVED_ENV) + ["VL_DEADLINE", "CONTAINER_API_KEY", "VAST_URL", "VASTAI_X", "LOCALCLOUD_X"])
def test_every_name_the_launch_owns_is_refused_in_env(repo_factory, tmp_path, name):
    repo = repo_factory(stage_config(SLEEP))
    p = run_cli(["--local", "--config", "configs/test.yaml", "--env", f"{name}=abc"], cwd=repo)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and f"--env {name}: set by the launch itself" in lines[0], p.stderr
    assert "abc" not in p.stderr  # the value is never echoed: it might be a secret
    assert not (tmp_path / "home" / "local" / "cloud").exists() or not list((tmp_path / "home" / "local" / "cloud").glob("instance-*"))


def test_down_while_the_instance_loads_ends_the_launch_without_renting_again(repo_factory, cloud):
    repo = repo_factory(stage_config(SLEEP, lifecycle={"loading_timeout_minutes": 30}))
    cloud.cloud.faults.update({"loading_forever": True})
    proc = start_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], repo, cloud_env(cloud))
    read_until(proc, "is loading")
    (row,) = rows(repo, cloud_env(cloud))
    down = run_cli(["down", row["launch_id"], "--yes"], cwd=repo, env=cloud_env(cloud))
    assert down.returncode == 0 and "destroyed (confirmed gone)" in down.stdout, down.stdout + down.stderr
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 1 and "was ended while its instance was loading" in out + "", out[-2000:]
    assert len(creates(cloud)) == 1  # no second offer
    (after,) = rows(repo, cloud_env(cloud))
    assert after["state"] == "destroyed" and after["end_reason"] == "destroyed by `vast-launch down`", after
    assert all(i.status == "destroyed" for i in cloud.cloud.instances.values())


def deletes(cloud, iid):
    return [e for e in cloud.cloud.events if e["method"] == "DELETE" and e["path"].rstrip("/").endswith(f"/instances/{iid}")]


def test_a_lost_delete_after_ctrl_c_is_sent_again_until_the_instance_is_gone(repo_factory, cloud):
    repo = repo_factory(stage_config(SLEEP))
    proc = start_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], repo, cloud_env(cloud))
    read_until(proc, "stage 1/1")
    (inst,) = cloud.cloud.instances.values()
    cloud.cloud.faults.update({"destroy_ignored": 1})  # the cloud acknowledges the first DELETE and loses it
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 130, out[-2000:]
    assert inst.status == "destroyed" and len(deletes(cloud, inst.id)) >= 2
    (row,) = rows(repo, cloud_env(cloud))
    assert row["state"] == "aborted", row


def test_a_destroy_that_never_takes_says_so_with_its_own_exit_code_and_leaves_the_row_open(repo_factory, cloud):
    repo = repo_factory(stage_config(SLEEP))
    assert run_cli(["--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud)).returncode == 0
    (inst,) = cloud.cloud.instances.values()
    (row,) = rows(repo, cloud_env(cloud))
    cloud.cloud.faults.update({"destroy_ignored": 100})
    p = run_cli(["down", row["launch_id"], "--yes"], cwd=repo, env=cloud_env(cloud))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 4 and len(lines) == 1, p.stdout + p.stderr
    assert f"instance {inst.id} still exists after 4 destroys" in lines[0] and "may still be running" in lines[0]
    assert inst.status == "running" and len(deletes(cloud, inst.id)) == 4
    assert rows(repo, cloud_env(cloud))[0]["state"] == "running"  # open: `reap` will find it
    cloud.cloud.faults.update({"destroy_ignored": 0})
    assert run_cli(["down", row["launch_id"], "--yes"], cwd=repo, env=cloud_env(cloud)).returncode == 0
    assert inst.status == "destroyed"
