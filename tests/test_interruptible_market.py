"""The local cloud's interruptible market and instance rows as Vast shows them, through the real `vastai` client:
a bid under the machine's minimum, intended_status/next_state on stop and outbid, a stopped instance whose GPU
another renter took, a host that goes offline, the ssh/ports/local_ipaddrs fields other clients read, the v0
list's 410 body. And what the launcher does with each."""

import json

import pytest
import requests
from conftest import wait_for
from test_localcloud_cli import create_sleeper, vastai

pytestmark = pytest.mark.conformance


def _show(cloud, iid) -> dict:
    return json.loads(vastai(cloud, "show", "instance", str(iid), "--raw").stdout)


def _bid_sleeper(cloud, offer, price, check=True):
    args = ("create", "instance", str(offer), "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 60", "--bid_price", str(price))
    return vastai(cloud, *args, "--raw", check=check)


def test_a_bid_under_the_minimum_makes_a_stopped_instance_and_answers_an_error_naming_it(cloud):
    cloud.cloud.set_offer(1001, min_bid=0.5)
    p = _bid_sleeper(cloud, 1001, 0.2, check=False)
    answer = json.loads(p.stdout[p.stdout.index("{") :])
    assert answer["success"] is False and answer["error"] == "insufficient_bid", answer
    iid = answer["new_contract"]
    row = _show(cloud, iid)  # it exists, stopped, and bills its storage until destroyed (dstack destroys it)
    assert row["actual_status"] == "stopped" and row["intended_status"] == row["next_state"] == row["cur_state"] == "stopped"
    assert cloud.cloud.instances[iid].starts == 0
    vastai(cloud, "destroy", "instance", str(iid), "--yes")
    assert cloud.cloud.instances[iid].status == "destroyed"


def test_stop_and_outbid_show_in_intended_status_and_next_state(cloud):
    iid = json.loads(_bid_sleeper(cloud, 1001, 0.5).stdout)["new_contract"]
    assert wait_for(lambda: _show(cloud, iid)["actual_status"] == "running", 60)
    row = _show(cloud, iid)
    assert row["intended_status"] == row["next_state"] == row["cur_state"] == "running"
    cloud.cloud.outbid(iid, winning_bid=0.9)
    row = _show(cloud, iid)
    # dstack's test for an outbid instance: cur_state == intended_status == next_state == "stopped"
    assert row["cur_state"] == row["intended_status"] == row["next_state"] == "stopped" and row["status_msg"].startswith("outbid")
    cloud.cloud.bid_lost_its_rival(iid)
    assert wait_for(lambda: _show(cloud, iid)["actual_status"] == "running", 60)
    assert _show(cloud, iid)["intended_status"] == "running"
    vastai(cloud, "stop", "instance", str(iid))
    row = _show(cloud, iid)
    assert row["actual_status"] == "stopped" and row["intended_status"] == "stopped"
    vastai(cloud, "start", "instance", str(iid))
    assert wait_for(lambda: _show(cloud, iid)["actual_status"] == "running", 60)


def test_a_stopped_instance_whose_gpu_was_taken_cannot_start_again(cloud):
    iid = json.loads(_bid_sleeper(cloud, 1001, 0.5).stdout)["new_contract"]
    assert wait_for(lambda: _show(cloud, iid)["actual_status"] == "running", 60)
    cloud.cloud.outbid(iid, winning_bid=0.9)
    cloud.cloud.take_machine(iid)
    cloud.cloud.bid_lost_its_rival(iid)  # even when its bid wins again, the GPU is someone else's
    vastai(cloud, "start", "instance", str(iid))
    row = _show(cloud, iid)
    assert row["actual_status"] == "stopped" and "another user" in row["status_msg"], row
    assert cloud.cloud.instances[iid].starts == 1


def test_a_host_that_goes_offline_kills_the_container_and_stops_billing(cloud):
    iid = create_sleeper(cloud, 1001)
    assert wait_for(lambda: _show(cloud, iid)["actual_status"] == "running", 60)
    cloud.cloud.host_offline(iid)
    inst = cloud.cloud.instances[iid]
    assert _show(cloud, iid)["actual_status"] == "offline" and cloud.cloud.shell_pid(iid) is None
    before = inst.charges()["storage_seconds"]
    assert wait_for(lambda: inst.charges()["storage_seconds"] == before and inst.charges()["gpu_seconds"] > 0, 5)


def test_rows_carry_the_ssh_ports_and_address_fields_other_clients_read(cloud):
    args = ("create", "instance", "1001", "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 60")
    iid = json.loads(vastai(cloud, *args, "--ssh", "--direct", "--env", "-p 10022:10022 -e A=1", "--raw").stdout)["new_contract"]
    row = _show(cloud, iid)
    assert row["ssh_host"] and isinstance(row["ssh_port"], int)  # SkyPilot's provisioner waits for ssh_port
    assert int(row["ports"]["10022/tcp"][0]["HostPort"]) > 0  # dstack reads this right after create
    assert row["local_ipaddrs"] and row["public_ipaddr"]
    url = vastai(cloud, "ssh-url", str(iid)).stdout.strip()
    assert url == f"ssh://root@{row['ssh_host']}:{row['ssh_port']}", url
    h = {"Authorization": f"Bearer {cloud.api_key}"}
    gone = requests.get(f"{cloud.url}/api/v0/instances/", headers=h, timeout=30)
    assert gone.status_code == 410 and gone.json()["error"] == "deprecated_endpoint"


def test_a_container_stopped_mid_fetch_fetches_again_when_it_starts(repo_factory, cloud):
    """Outbid during the code fetch, the container starts again on what it left: a repository without the commit
    and git's lock. (Seeded before the first start: the bootstrap meets it as a restart would.)"""
    import os
    import subprocess

    from conftest import BIN, cloud_env, no_live_processes, stage_config
    from test_lifecycle import status_rows

    repo = repo_factory(stage_config([{"name": "a", "command": "echo fetched-and-ran"}]))
    cloud.cloud.loading_seconds = 3600  # it stays loading until the work dir is seeded
    proc = subprocess.Popen(
        [str(BIN / "vast-launch"), "--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow", "--poll-seconds", "0.1"],
        cwd=repo,
        env={**os.environ, **cloud_env(cloud)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(lambda: len(cloud.cloud.instances) == 1, 120)
        (inst,) = cloud.cloud.instances.values()
        launch_id = inst.label.split()[0].split(":", 1)[1]
        work = inst.workdir / f"vl-{launch_id}"
        subprocess.run(["git", "init", "-q", str(work / "repo")], check=True)
        (work / "repo" / ".git" / "shallow.lock").write_text("")
        cloud.cloud._loaded(inst.id)
        out = proc.communicate(timeout=600)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0 and "| fetched-and-ran" in out, out[-3000:]
    assert inst.status == "destroyed" and inst.destroyed_by == "instance"
    (row,) = status_rows(repo, cloud_env(cloud))
    assert row["end_reason"] == "completed: all stages done; the instance destroyed itself", row
    assert no_live_processes(cloud)
