"""The real `vastai` CLI works against the local cloud unchanged, through VAST_URL."""

import json
import os
import subprocess

import pytest
from conftest import BIN, wait_for

pytestmark = pytest.mark.conformance


def vastai(lc, *args, check=True):
    env = dict(os.environ, VAST_URL=lc.url, VAST_API_KEY=lc.api_key, VASTAI_NO_UPDATE_CHECK="1")
    p = subprocess.run([str(BIN / "vastai"), *args], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert "Failed with error" not in p.stderr + p.stdout, p.stderr + p.stdout
    return p


def create_sleeper(lc, offer) -> int:
    args = ("create", "instance", str(offer), "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 60", "--raw")
    return json.loads(vastai(lc, *args).stdout)["new_contract"]


def test_vastai_cli_search_create_show_destroy(cloud):
    offers = json.loads(vastai(cloud, "search", "offers", "reliability>0.9", "--raw").stdout)
    assert {o["id"] for o in offers} == {1001, 1002}

    created = json.loads(
        vastai(
            cloud,
            "create",
            "instance",
            "1001",
            "--image",
            "img",
            "--disk",
            "10",
            "--onstart-cmd",
            "echo started-by-onstart; sleep 60",
            "--label",
            "vast-launch:cli",
            "--raw",
        ).stdout
    )
    iid = created["new_contract"]
    assert created["success"] and iid

    def running():
        row = json.loads(vastai(cloud, "show", "instance", str(iid), "--raw").stdout)
        return row["actual_status"] == "running"

    assert wait_for(running, 10)
    listed = json.loads(vastai(cloud, "show", "instances", "--raw").stdout)
    assert [r["label"] for r in listed] == ["vast-launch:cli"]
    assert wait_for(lambda: "started-by-onstart" in vastai(cloud, "logs", str(iid)).stdout, 10)

    vastai(cloud, "destroy", "instance", str(iid), "-y")
    assert cloud.cloud.instances[iid].status == "destroyed"
    assert cloud.cloud.instances[iid].destroyed_by == "account"
    assert json.loads(vastai(cloud, "show", "instances", "--raw").stdout) == []


def test_instance_environment_is_what_vast_sets(cloud):
    vastai(
        cloud,
        "create",
        "instance",
        "1002",
        "--image",
        "img",
        "--disk",
        "10",
        "--env",
        "-e FOO=bar",
        "--onstart-cmd",
        "env > env.txt",
        "--raw",
    )
    inst = next(iter(cloud.cloud.instances.values()))
    assert wait_for(lambda: (inst.workdir / "env.txt").exists() and cloud.cloud.shell_pid(inst.id) is None, 30)  # the onstart ended
    assert inst.status == "running"  # as on Vast: the onstart ended, the container runs (and bills) on
    env = dict(line.split("=", 1) for line in (inst.workdir / "env.txt").read_text().splitlines() if "=" in line)
    assert env["CONTAINER_ID"] == str(inst.id)
    assert env["CONTAINER_API_KEY"] == inst.api_key
    assert env["VAST_CONTAINERLABEL"] == f"C.{inst.id}"
    assert env["GPU_COUNT"] == "1" and env["PUBLIC_IPADDR"] and env["VAST_URL"] == cloud.url
    assert env["FOO"] == "bar"
    assert env["VASTAI_NO_UPDATE_CHECK"] == "1"


def test_v1_list_paginates_and_old_list_is_gone(cloud):
    import requests

    for _ in range(3):
        vastai(cloud, "create", "instance", "1001", "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 30")
    h = {"Authorization": f"Bearer {cloud.api_key}"}
    page = requests.get(f"{cloud.url}/api/v1/instances/", params={"limit": 2}, headers=h).json()
    assert len(page["instances"]) == 2 and page["next_token"] and page["total_instances"] == 3
    rest = requests.get(f"{cloud.url}/api/v1/instances/", params={"limit": 2, "after_token": page["next_token"]}, headers=h).json()
    assert len(rest["instances"]) == 1 and rest["next_token"] is None
    assert requests.get(f"{cloud.url}/api/v0/instances/", headers=h).status_code == 410
    assert requests.get(f"{cloud.url}/api/v1/instances/", headers={"Authorization": "Bearer nope"}).status_code == 404


def test_v1_pages_in_both_orders_and_survive_a_destroy_between_pages(cloud):
    ids = [create_sleeper(cloud, 1001 + i % 2) for i in range(5)]  # on both offers: each hosts 4 rentals at once
    for direction, expected in (("asc", ids), ("desc", ids[::-1])):
        # the CLI itself follows next_token page by page (25 a page at most; --limit 2 here)
        got = json.loads(vastai(cloud, "show", "instances", "--raw", "--order-by", f"id {direction}", "--limit", "2", "--all").stdout)
        assert [r["id"] for r in got] == expected, direction
    import requests

    h = {"Authorization": f"Bearer {cloud.api_key}"}
    order = json.dumps([{"col": "id", "dir": "desc"}])
    first = requests.get(f"{cloud.url}/api/v1/instances/", params={"limit": 2, "order_by": order}, headers=h).json()
    assert [r["id"] for r in first["instances"]] == ids[:-3:-1]
    vastai(cloud, "destroy", "instance", str(ids[3]), "-y")  # the last row served vanishes
    rest = requests.get(
        f"{cloud.url}/api/v1/instances/", params={"limit": 2, "order_by": order, "after_token": first["next_token"]}, headers=h
    ).json()
    assert [r["id"] for r in rest["instances"]] == [ids[2], ids[1]]


def test_stop_during_loading_stays_stopped_and_start_brings_back_an_exited_instance(tmp_path):
    from vast_launch.localcloud import LocalCloud

    # The image never finishes loading on its own here; the test finishes it after the stop,
    # so the order of events does not depend on how fast the CLI starts.
    with LocalCloud(root=tmp_path / "c", loading_seconds=3600.0) as lc:
        iid = json.loads(
            vastai(
                lc, "create", "instance", "1001", "--image", "i", "--disk", "10", "--onstart-cmd", "echo up >> ups; sleep 60", "--raw"
            ).stdout
        )["new_contract"]
        vastai(lc, "stop", "instance", str(iid))  # before the image finished loading
        inst = lc.cloud.instances[iid]
        assert inst.status == "stopped"
        timer = inst.loading_timer
        timer.cancel()
        timer.function(*timer.args)  # the image finished loading: it must not start a stopped container
        assert inst.status == "stopped" and inst.starts == 0
        lc.cloud.mark_exited(iid)
        assert inst.status == "exited"
        vastai(lc, "start", "instance", str(iid))
        assert wait_for(lambda: inst.status == "running" and (inst.workdir / "ups").exists(), 10)
        assert inst.starts == 1


def test_reboot_recycle_and_bulk_commands_as_the_cli_sends_them(cloud):
    def make():
        return json.loads(
            vastai(
                cloud,
                "create",
                "instance",
                "1001",
                "--image",
                "i",
                "--disk",
                "10",
                "--onstart-cmd",
                "echo up >> ups; touch mine; sleep 120",
                "--raw",
            ).stdout
        )["new_contract"]

    a, b = make(), make()
    ia, ib = cloud.cloud.instances[a], cloud.cloud.instances[b]
    assert wait_for(lambda: (ia.workdir / "ups").exists() and (ib.workdir / "ups").exists(), 20)
    vastai(cloud, "reboot", "instance", str(a))  # same files, the onstart runs again
    assert wait_for(lambda: (ia.workdir / "ups").read_text().count("up") == 2, 20) and ia.starts == 2
    (ib.workdir / "left-behind").touch()
    vastai(cloud, "recycle", "instance", str(b))  # a fresh container from the image
    assert wait_for(lambda: (ib.workdir / "ups").exists() and ib.starts == 2, 20)
    assert not (ib.workdir / "left-behind").exists() and (ib.workdir / "ups").read_text().count("up") == 1
    vastai(cloud, "stop", "instances", str(a), str(b))
    assert ia.status == ib.status == "stopped"
    vastai(cloud, "start", "instances", str(a), str(b))
    assert ia.status == ib.status == "running"
    vastai(cloud, "destroy", "instances", str(a), str(b), "-y")
    assert ia.status == ib.status == "destroyed"
    assert json.loads(vastai(cloud, "show", "instances", "--raw").stdout) == []


def test_geolocation_is_searched_by_country_code(cloud, tmp_path):
    cloud.cloud.set_offer(1001, geolocation="California, US")
    cloud.cloud.set_offer(1002, geolocation="Quebec, CA")

    def found(query):
        return sorted(o["id"] for o in json.loads(vastai(cloud, "search", "offers", query, "--raw").stdout))

    assert found("geolocation in [US,CA]") == [1001, 1002]
    assert found("geolocation=CA") == [1002]
    assert found("geolocation notin [US]") == [1002]
    assert found("geolocation in [DE]") == []

    from conftest import cloud_env, make_repo, run_cli, stage_config

    repo = make_repo(tmp_path / "r", stage_config([{"name": "a", "command": "true"}], resources={"regions": ["CA"]}))
    shown = run_cli(["offers", "--config", "configs/test.yaml", "--json"], cwd=repo, env=cloud_env(cloud))
    assert [o["id"] for o in json.loads(shown.stdout)] == [1002], shown.stderr
    # --local rents this machine, wherever it is: the regions filter does not apply there
    dry = run_cli(["--local", "--config", "configs/test.yaml", "--dry-run"], cwd=repo)
    assert dry.returncode == 0, dry.stdout[-1500:] + dry.stderr


def test_instance_key_only_reaches_its_own_instance(cloud):
    import requests

    a = vastai(cloud, "create", "instance", "1001", "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 30", "--raw")
    b = vastai(cloud, "create", "instance", "1001", "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 30", "--raw")
    a, b = json.loads(a.stdout), json.loads(b.stdout)
    h = {"Authorization": f"Bearer {a['instance_api_key']}"}
    assert requests.delete(f"{cloud.url}/api/v0/instances/{b['new_contract']}/", headers=h, json={}).status_code == 404
    assert requests.post(f"{cloud.url}/api/v0/bundles/", headers=h, json={}).status_code == 401
    assert requests.delete(f"{cloud.url}/api/v0/instances/{a['new_contract']}/", headers=h, json={}).json()["success"]
    assert cloud.cloud.instances[a["new_contract"]].destroyed_by == "instance"
    assert cloud.cloud.instances[b["new_contract"]].status != "destroyed"


def test_billing_per_second_and_invoices(tmp_path):
    import requests

    from vast_launch.localcloud import LocalCloud

    with LocalCloud(root=tmp_path / "c", price_dph=36.0, loading_seconds=0.1) as lc:
        lc.cloud.set_offer(1001, storage_cost=72.0)  # $/GB/month
        vastai(lc, "create", "instance", "1001", "--image", "i", "--disk", "10", "--onstart-cmd", "sleep 30")
        inst = next(iter(lc.cloud.instances.values()))
        assert wait_for(lambda: inst.status == "running", 5)
        wait_for(lambda: False, 1.0)
        vastai(lc, "destroy", "instance", str(inst.id), "-y")
        c = inst.charges()
        assert c["gpu_seconds"] > 0.9
        assert abs(c["gpu_usd"] - 36.0 * c["gpu_seconds"] / 3600) < 1e-9
        assert abs(c["storage_usd"] - 72.0 * 10 / 720 * c["storage_seconds"] / 3600) < 1e-9
        assert c["storage_seconds"] > c["gpu_seconds"]  # storage is billed while loading too
        inv = requests.get(
            f"{lc.url}/api/v0/users/me/invoices", headers={"Authorization": f"Bearer {lc.api_key}"}, params={"sdate": 0, "edate": 2e10}
        ).json()
        assert abs(sum(r["amount"] for r in inv["invoices"]) - c["total_usd"]) < 1e-6
        # v1 charges in the shape the CLI reads: a row per instance, its GPU and storage lines as items
        raw = json.loads(vastai(lc, "show", "invoices-v1", "--charges", "--raw").stdout)
        (row,) = raw["results"]
        assert row["type"] == "instance" and row["source"] == f"instance-{inst.id}" and raw["total"] == 1
        assert abs(row["amount"] - c["total_usd"]) < 1e-6 and {i["type"] for i in row["items"]} == {"gpu", "storage"}
        for args in (["--charges"], ["--charges", "--format", "tree", "--verbose"], ["--invoices"]):
            shown = vastai(lc, "show", "invoices-v1", *args)
            assert shown.returncode == 0 and "Traceback" not in shown.stderr, (args, shown.stderr[-2000:])
        assert f"Instance {inst.id}" in vastai(lc, "show", "invoices-v1", "--charges", "--format", "tree", "--verbose").stdout


def test_launch_instance_searches_and_rents_in_one_call(cloud):
    """`vastai launch instance`: the client turns Local_CPU into "Local CPU" and the service rents the first match."""
    out = vastai(cloud, "launch", "instance", "-g", "Local_CPU", "-n", "1", "-i", "img", "--onstart-cmd", "sleep 600", "--raw")
    created = json.loads(out.stdout)
    inst = cloud.cloud.instances[created["new_contract"]]
    assert inst.offer["gpu_name"] == "Local CPU" and inst.onstart == "sleep 600" and inst.image == "img"
    env = dict(os.environ, VAST_URL=cloud.url, VAST_API_KEY=cloud.api_key, VASTAI_NO_UPDATE_CHECK="1")
    none = subprocess.run(
        [str(BIN / "vastai"), "launch", "instance", "-g", "RTX_4090", "-n", "1", "-i", "img", "--raw"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # nothing matches: a 404 (the CLI shows the status, not the body) and nothing rented
    assert "404" in none.stdout + none.stderr and len(cloud.cloud.instances) == 1, none.stdout + none.stderr
    vastai(cloud, "destroy", "instance", str(inst.id), "-y")
    assert inst.status == "destroyed"


def test_the_args_run_type_runs_its_args_and_exits_with_them(cloud):
    """As on Vast, only an args run type's main process ending makes the instance `exited`."""
    created = json.loads(
        vastai(cloud, "create", "instance", "1001", "--image", "img", "--raw", "--args", "bash", "-c", "echo hello-$((6*7))").stdout
    )
    inst = cloud.cloud.instances[created["new_contract"]]
    assert inst.runtype == "args"
    assert wait_for(lambda: inst.status == "exited", 120), inst.status
    assert "hello-42" in inst.log_path.read_text() and inst.starts == 1
    vastai(cloud, "destroy", "instance", str(inst.id), "-y")


def test_a_full_offer_leaves_search_until_an_instance_on_it_is_destroyed(cloud):
    """On Vast a rented machine's offer is gone from search, and a create on it answers no_such_ask,
    until the rental ends (here: each offer hosts `slots` rentals)."""
    cloud.cloud.set_offer(1001, slots=2)

    def listed():
        return [o["id"] for o in json.loads(vastai(cloud, "search", "offers", "--raw").stdout)]

    first, second = create_sleeper(cloud, 1001), create_sleeper(cloud, 1001)
    assert listed() == [1002]
    refused = vastai(cloud, "create", "instance", "1001", "--image", "i", "--disk", "10", "--raw", check=False)
    assert "no longer available" in refused.stdout + refused.stderr
    assert len(cloud.cloud.instances) == 2

    vastai(cloud, "destroy", "instance", str(first), "-y")
    assert sorted(listed()) == [1001, 1002]
    third = create_sleeper(cloud, 1001)
    assert cloud.cloud.instances[third].offer["id"] == 1001 and listed() == [1002]
    for iid in (second, third):
        vastai(cloud, "destroy", "instance", str(iid), "-y")
