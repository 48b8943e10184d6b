"""The local cloud isolates its instances as Vast's containers are isolated: an attack from inside one
instance on a sibling's files and key, on the account key file and on other processes' environments
fails. And each secret is in the environment of the instance processes that need it, and no other."""

import json
import os
from pathlib import Path

import pytest
from conftest import IN_CI, cloud_env, run_cli, stage_config, wait_for

from vast_launch.localcloud import LocalCloud
from vast_launch.localcloud.containers import isolation_available

ATTACK = Path(__file__).parent / "clients" / "attack.py"


def require_isolation():
    if not isolation_available():
        msg = "container isolation needs mount and PID namespaces (root, or CAP_SYS_ADMIN) for unshare"
        pytest.fail(msg) if IN_CI else pytest.skip(msg)


def create(lc, onstart: str) -> int:
    import requests

    body = {"image": "img", "disk": 10, "onstart": onstart, "label": "isolation", "runtype": "ssh"}
    r = requests.put(f"{lc.url}/api/v0/asks/1002/", json=body, headers={"Authorization": f"Bearer {lc.api_key}"}, timeout=60)
    r.raise_for_status()
    return int(r.json()["new_contract"])


def test_an_instance_cannot_reach_a_siblings_key_the_account_key_or_other_processes(tmp_path):
    require_isolation()
    home = tmp_path / "home"
    home.mkdir()
    keyfile = home / "localcloud_api_key"
    with LocalCloud(root=home / "cloud", loading_seconds=0.1, hidden_paths=(keyfile,)) as lc:
        keyfile.write_text(lc.api_key)
        victim = create(lc, "sleep 600")
        assert wait_for(lambda: lc.cloud.instances[victim].status == "running" and lc.cloud.shell_pid(victim), 60)
        attack = f"python3 -S {ATTACK} {lc.cloud.instances[victim].workdir} {keyfile} {lc.url} {victim} > report.json 2>&1"
        attacker = create(lc, attack)
        report_file = lc.cloud.instances[attacker].workdir / "report.json"
        assert wait_for(lambda: report_file.exists() and report_file.stat().st_size > 0 and lc.cloud.shell_pid(attacker) is None, 120)
        report = json.loads(report_file.read_text())
        assert report["sibling_key"] is None and report["sibling_listing"] is None, report
        assert report["root_listing"] == [f"instance-{attacker}"], report  # the cloud's root shows only its own folder
        assert report["account_key"] in (None, ""), report  # hidden: unreadable, or an empty file in its place
        assert report["own_key"] == lc.cloud.instances[attacker].api_key  # its own files are there
        assert report["pids_seen"] <= 6, report  # its own processes only (the container's init, its shells)
        assert lc.api_key not in json.dumps(report["environ_secrets"]) and not report["environ_secrets"], report
        assert report["destroy_with_own_key"] in (401, 403, 404), report  # its key reaches only itself
        assert lc.cloud.instances[victim].status == "running"


def test_each_secret_is_only_in_the_environment_of_the_processes_that_need_it(repo_factory, tmp_path, s3):
    """/proc/*/environ of every process of a running instance: the W&B key in the stage's processes alone,
    the git token, the instance key and the store's keys in none (they are read from .vl/secrets/ by the
    one process that uses each)."""
    require_isolation()
    _, outputs = s3
    secrets = {"WANDB_API_KEY": "wandb-" + os.urandom(12).hex(), "VAST_LAUNCH_GIT_TOKEN": "tok-" + os.urandom(12).hex()}
    stage = 'touch "$VL_W/stage-up"; until [ -f "$VL_W/go" ]; do sleep 0.1; done'
    repo = repo_factory(stage_config([{"name": "s", "command": stage}], wandb={"mode": "online"}, outputs=outputs))
    with LocalCloud(root=tmp_path / "c", loading_seconds=0.1) as lc:
        env = {**cloud_env(lc), **secrets}
        p = run_cli(["--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=env)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        (inst,) = lc.cloud.instances.values()
        vl = next(inst.workdir.glob("vl-*"))
        assert wait_for(lambda: (vl / "stage-up").exists(), 120)
        from vast_launch.localcloud.containers import container_pids

        values = {
            "WANDB_API_KEY": secrets["WANDB_API_KEY"],
            "git token": secrets["VAST_LAUNCH_GIT_TOKEN"],
            "instance key": inst.api_key,
            "store key": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        holders = {name: [] for name in values}
        for pid in container_pids(inst.marker):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            for name, value in values.items():
                if value.encode() in environ:
                    holders[name].append(argv)
        (vl / "go").touch()
        assert wait_for(lambda: inst.status == "destroyed", 120)
    assert holders["git token"] == [] and holders["instance key"] == [] and holders["store key"] == [], holders
    # the container's own first process got them from Vast; after the bootstrap moved them out, only the
    # stage (a bash -c running the command, and what it starts) holds the W&B key
    # (the stage's own `touch .../stage-up` may still be exiting when the scan starts: it is the stage too)
    of_the_stage = ("until [ -f", "sleep", "stage-up")
    assert holders["WANDB_API_KEY"] and all(any(s in argv for s in of_the_stage) for argv in holders["WANDB_API_KEY"]), holders
