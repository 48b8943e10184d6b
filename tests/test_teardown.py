"""Teardown cannot be skipped: each layer is killed in turn and the others still end the billing.

Every test runs a real process tree in the local cloud and talks to it through the real SDK.
"""

import json
import os
import signal
import time

from conftest import cloud_env, no_live_processes, run_cli, stage_config, wait_for

SHORT_DEADLINE_H = 4 / 3600  # a hard deadline of 4 seconds


def launch(repo, lc, *extra, follow=True):
    args = ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow" if follow else "--detach", *extra]
    return run_cli(args, cwd=repo, env=cloud_env(lc))


def status(repo):
    return json.loads(run_cli(["status", "--json"], cwd=repo).stdout)


def only_instance(lc):
    (inst,) = lc.cloud.instances.values()
    return inst


def vl_dir(inst):
    return next(inst.workdir.glob("vl-*"))


def test_failing_stage_is_torn_down_by_the_trap(repo_factory, cloud):
    repo = repo_factory(
        stage_config(
            [
                {"name": "operator", "command": "echo ok"},
                {"name": "diffusion_residual", "command": "echo boom; exit 7"},
                {"name": "consistency_distill", "command": "echo never"},
            ]
        )
    )
    p = launch(repo, cloud)
    assert p.returncode == 7, p.stderr  # the failed stage's own exit code
    inst = only_instance(cloud)
    assert inst.destroyed_by == "instance"
    assert "never" not in p.stdout.replace("echo never", "")
    (row,) = status(repo)
    assert row["state"] == "destroyed"
    assert row["end_reason"].startswith("failed in stage diffusion_residual (exit 7)")
    boot = (vl_dir(inst) / "boot.log").read_text()
    assert "destroying instance" in boot and "not running: tearing down in a new process" not in boot  # the agent did it
    assert no_live_processes(cloud)


def _finish_helper_pids(inst):
    """The teardown agent the bootstrap starts before the stages, blocked on its fifo."""
    from vast_launch.localcloud.containers import container_pids

    def is_helper(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
                return b"vast_launch.vast.shell.agent" in argv and b"serve" in argv
        except OSError:
            return False

    return [pid for pid in container_pids(inst.marker) if is_helper(pid)]


def test_trap_destroys_even_when_its_prestarted_helper_was_killed(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": 'until [ -f "$VL_W/go_on" ]; do sleep 0.1; done'}]))
    assert launch(repo, cloud, follow=False).returncode == 0
    inst = only_instance(cloud)
    assert wait_for(lambda: "stage 1/1 a: start" in inst.log_path.read_text(), 60)
    assert wait_for(lambda: _finish_helper_pids(inst), 30)
    for pid in _finish_helper_pids(inst):
        os.kill(pid, signal.SIGKILL)  # an OOM kill, say, during training
    (vl_dir(inst) / "go_on").touch()
    assert wait_for(lambda: inst.status == "destroyed", 60)
    assert inst.destroyed_by == "instance"
    boot = (vl_dir(inst) / "boot.log").read_text()
    assert "the teardown agent is not running: tearing down in a new process" in boot  # the fallback
    assert "destroying instance %d" % inst.id in boot
    assert no_live_processes(cloud)


def test_hanging_training_is_destroyed_by_the_watchdog(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}], lifecycle={"max_hours": SHORT_DEADLINE_H}))
    p = launch(repo, cloud)
    assert p.returncode == 124, p.stderr  # the watchdog's documented exit code, not success
    inst = only_instance(cloud)
    assert inst.destroyed_by == "instance" and (vl_dir(inst) / "deadline_hit").read_text().strip() == "deadline"
    (row,) = status(repo)
    assert row["state"] == "destroyed"
    assert row["end_reason"] == "deadline reached (lifecycle.max_hours): destroyed by the in-instance watchdog"
    assert no_live_processes(cloud)


def test_watchdog_survives_sigkill_of_the_trap_shell(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}], lifecycle={"max_hours": 8 / 3600}))
    p = launch(repo, cloud, follow=False)
    assert p.returncode == 0, p.stderr
    inst = only_instance(cloud)
    assert wait_for(lambda: "stage 1/1 a: start" in inst.log_path.read_text(), 60)
    os.kill(cloud.cloud.shell_pid(inst.id), signal.SIGKILL)  # the bootstrap shell that holds the trap
    assert wait_for(lambda: inst.status == "destroyed", 40)
    assert inst.destroyed_by == "instance" and (vl_dir(inst) / "deadline_hit").exists()
    assert no_live_processes(cloud)


def test_reaper_destroys_when_both_in_container_layers_are_off(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}], lifecycle={"max_hours": 1 / 3600}))
    cloud.cloud.faults.update({"layers_off": True})
    p = launch(repo, cloud, follow=False)
    assert p.returncode == 0, p.stderr
    inst = only_instance(cloud)
    time.sleep(2.5)  # past the 1 s deadline; the instance keeps running with no layer inside
    assert inst.status == "running"
    dry = run_cli(["reap", "--dry-run", "--grace-minutes", "0"], cwd=repo, env=cloud_env(cloud))
    assert dry.returncode == 2, dry.stderr
    assert f"would destroy instance {inst.id}" in dry.stdout and "past its deadline" in dry.stdout
    assert inst.status == "running"
    done = run_cli(["reap", "--yes", "--grace-minutes", "0"], cwd=repo, env=cloud_env(cloud))
    assert done.returncode == 2, done.stderr
    assert inst.status == "destroyed" and inst.destroyed_by == "account"
    assert status(repo)[0]["end_reason"].startswith("reaped: past its deadline")
    again = run_cli(["reap", "--yes"], cwd=repo, env=cloud_env(cloud))
    assert again.returncode == 0 and "nothing to reap" in again.stdout
    assert no_live_processes(cloud)


def test_reaper_finds_labeled_instances_unknown_to_the_ledger(cloud, tmp_path):
    """This workspace's label on an instance its ledger does not know (the ledger was lost, say): reaped at once.
    Another workspace's, or a label without one: only past its own deadline (test_shared_account)."""
    from vast_launch.vast.sdk import VastProvider

    env = {**cloud_env(cloud), "VAST_LAUNCH_WORKSPACE": "mine"}
    VastProvider(cloud.api_key, cloud.url).create(
        1001, {"image": "x", "disk": 10, "label": "vast-launch:ghost ws=mine", "onstart": "sleep 600"}
    )
    VastProvider(cloud.api_key, cloud.url).create(1001, {"image": "x", "disk": 10, "label": "someone-else", "onstart": "sleep 600"})
    p = run_cli(["reap", "--yes", "--json"], cwd=tmp_path, env=env)
    assert p.returncode == 2, p.stderr
    (v,) = json.loads(p.stdout)
    assert v["launch_id"] == "ghost" and "labeled by this workspace but unknown to its ledger" in v["reason"] and v["destroyed"]
    labels = {i.label: i.status for i in cloud.cloud.instances.values()}
    assert labels == {"vast-launch:ghost ws=mine": "destroyed", "someone-else": labels["someone-else"]}
    assert labels["someone-else"] != "destroyed"


def test_destroy_failures_are_retried(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}]))
    cloud.cloud.faults.update({"destroy_failures": 3, "destroy_failure_status": 503})
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    inst = only_instance(cloud)
    assert inst.destroyed_by == "instance"
    deletes = [e["status"] for e in cloud.cloud.events if e["method"] == "DELETE"]
    assert deletes[:3] == [503, 503, 503] and 200 in deletes


def test_destroy_over_http_when_the_image_has_no_vastai_cli(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "command -v vastai || echo no-vastai-cli-here"}]))
    cloud.cloud.faults.update({"no_vastai_cli": True, "destroy_failures": 1, "destroy_failure_status": 429})
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    inst = only_instance(cloud)
    assert "no-vastai-cli-here" in (vl_dir(inst) / "boot.log").read_text()
    deletes = [(e["status"], e["who"]) for e in cloud.cloud.events if e["method"] == "DELETE"]
    assert deletes == [(429, f"instance:{inst.id}"), (200, f"instance:{inst.id}")]
    assert inst.destroyed_by == "instance"


def test_container_restart_resumes_and_finished_work_tears_down_at_once(repo_factory, cloud):
    stages = [
        {"name": "a", "command": 'echo ran >> "$VL_W/a_count"'},
        {"name": "b", "command": '[ -f "$VL_W/restarted" ] || sleep 600; echo b-finished'},
    ]
    repo = repo_factory(stage_config(stages))
    assert launch(repo, cloud, follow=False).returncode == 0
    inst = only_instance(cloud)
    w = lambda: vl_dir(inst)  # noqa: E731
    assert wait_for(lambda: (w() / "markers" / "a.done").exists(), 20)
    (w() / "restarted").touch()
    cloud.cloud.restart(inst.id)  # onstart runs again, in the same filesystem
    assert wait_for(lambda: inst.status == "destroyed", 30)
    assert (w() / "a_count").read_text().count("ran") == 1  # stage a was not rerun
    assert "stage 1/2 a: already done, skipped" in (vl_dir(inst) / "boot.log").read_text()
    assert inst.starts == 2


def test_restart_after_completion_tears_down_without_retraining(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": 'echo ran >> "$VL_W/a_count"'}]))
    cloud.cloud.faults.update({"destroy_failures": 1000})  # the trap cannot destroy it this time
    assert launch(repo, cloud, follow=False).returncode == 0
    inst = only_instance(cloud)
    assert wait_for(lambda: (vl_dir(inst) / "done").exists(), 20)
    cloud.cloud.stop(inst.id)  # the host restarts it while the trap still retries: stop ends every process
    assert inst.status == "stopped"
    cloud.cloud.faults.update({"destroy_failures": 0})
    cloud.cloud.start(inst.id)
    assert wait_for(lambda: inst.status == "destroyed", 30)
    assert "already finished: tearing down" in (vl_dir(inst) / "boot.log").read_text()
    assert (vl_dir(inst) / "a_count").read_text().count("ran") == 1


def test_instance_stuck_loading_is_destroyed_and_next_offer_tried(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}], lifecycle={"loading_timeout_minutes": 0.05}))
    cloud.cloud.faults.update({"loading_forever": True})
    p = launch(repo, cloud)
    assert p.returncode == 1
    assert "no instance could be started after trying 2 offer(s)" in p.stderr
    insts = sorted(cloud.cloud.instances.values(), key=lambda i: i.id)
    assert [i.offer["machine_id"] for i in insts] == [501, 502]  # the stuck machine was skipped
    assert all(i.status == "destroyed" and i.destroyed_by == "account" for i in insts)
    (row,) = status(repo)
    assert row["state"] == "failed"


def test_the_launcher_destroys_an_instance_that_exited_under_it(repo_factory, cloud):
    """The container stopped from outside (a host fault) with the in-container layers off: the follower must
    not wait for a result that never comes, nor leave the exited instance billing storage."""
    from test_lifecycle import read_until, start_cli

    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    cloud.cloud.faults.update({"layers_off": True})
    proc = start_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], repo, cloud_env(cloud))
    read_until(proc, "stage 1/1")
    inst = only_instance(cloud)
    cloud.cloud.mark_exited(inst.id)
    out, _ = proc.communicate(timeout=600)
    assert f"instance {inst.id} is exited without tearing down: destroying it" in out, out
    assert proc.returncode != 0
    assert inst.status == "destroyed" and inst.destroyed_by == "account"
    (row,) = status(repo)
    assert row["state"] == "destroyed" and row["end_reason"] == "instance exited; destroyed by the launcher", row
    assert no_live_processes(cloud)


def test_reaper_destroys_instances_stuck_loading_or_exited_after_their_launcher_died(cloud, tmp_path):
    """What a SIGKILLed launcher leaves: ledger rows still open, one instance that never finished loading and
    one whose container exited. The reaper's loading and stuck rules end both, and close their rows."""
    from vast_launch.ledger import Ledger
    from vast_launch.vast.sdk import VastProvider

    vp = VastProvider(cloud.api_key, cloud.url)
    cloud.cloud.faults.update({"loading_forever": True})
    stuck = vp.create(1001, {"image": "x", "disk": 10, "label": "vast-launch:t-stuck", "onstart": "sleep 600"}).instance_id
    cloud.cloud.faults.update({"loading_forever": False})
    exited = vp.create(1001, {"image": "x", "disk": 10, "label": "vast-launch:t-exited", "onstart": "sleep 600"}).instance_id
    assert wait_for(lambda: cloud.cloud.instances[exited].status == "running", 30)
    cloud.cloud.mark_exited(exited)
    with Ledger() as ledger:
        for launch_id, iid, state in (("t-stuck", stuck, "loading"), ("t-exited", exited, "running")):
            ledger.create(
                launch_id,
                state,
                target="vast",
                instance_id=iid,
                provider_url=cloud.url,
                name="t",
                deadline=time.time() + 3600,
                extra={"launcher_pid": 1, "launcher_host": "gone", "launcher_started": 0},
            )
    args = ["reap", "--json", "--loading-minutes", "0.01", "--stuck-minutes", "0.01"]

    def planned() -> dict:  # the limits are 0.6 s: ask until both have been in their state that long
        p = run_cli([*args, "--dry-run"], cwd=tmp_path, env=cloud_env(cloud))
        return {v["launch_id"]: v["reason"] for v in json.loads(p.stdout or "[]")}

    assert wait_for(lambda: len(planned()) == 2, 120)
    assert cloud.cloud.instances[stuck].status == "loading"  # a dry run destroys nothing
    p = run_cli([*args, "--yes"], cwd=tmp_path, env=cloud_env(cloud))
    assert p.returncode == 2, p.stderr
    verdicts = {v["launch_id"]: v for v in json.loads(p.stdout)}
    assert verdicts["t-stuck"]["reason"] == "stuck in loading for more than 0.01 min", verdicts
    assert verdicts["t-exited"]["reason"] == "exited for more than 0.01 min (it never runs again)", verdicts
    assert all(v["destroyed"] for v in verdicts.values())
    assert {cloud.cloud.instances[i].status for i in (stuck, exited)} == {"destroyed"}
    with Ledger() as ledger:
        for launch_id in ("t-stuck", "t-exited"):
            row = ledger.get(launch_id)
            assert row["state"] == "destroyed" and row["end_reason"].startswith("reaped: "), row
    assert no_live_processes(cloud)


def _past_deadline(launch_id: str, minutes: float) -> None:
    """The launch's hard deadline, moved `minutes` into the past (as if that much time had gone by)."""
    from vast_launch.ledger import Ledger

    with Ledger() as ledger:
        ledger.db.execute("UPDATE launches SET deadline = ? WHERE id = ?", (time.time() - minutes * 60, launch_id))
        ledger.db.commit()


def test_reaper_waits_the_configs_grace_past_the_deadline_not_its_own_default(repo_factory, cloud):
    """lifecycle.reap_grace_minutes: 2 (the default is 10): 1 min past the deadline is within the grace,
    3 min past it is not, with no --grace-minutes given."""
    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}], lifecycle={"max_hours": 1, "reap_grace_minutes": 2}))
    cloud.cloud.faults.update({"layers_off": True})
    assert launch(repo, cloud, follow=False).returncode == 0
    inst = only_instance(cloud)
    (row,) = status(repo)
    _past_deadline(row["launch_id"], 1)
    within = run_cli(["reap", "--dry-run"], cwd=repo, env=cloud_env(cloud))
    assert within.returncode == 0 and "nothing to reap" in within.stdout, within.stdout + within.stderr
    _past_deadline(row["launch_id"], 3)
    past = run_cli(["reap", "--yes"], cwd=repo, env=cloud_env(cloud))
    assert past.returncode == 2 and f"destroyed instance {inst.id}" in past.stdout, past.stdout + past.stderr
    assert inst.status == "destroyed" and status(repo)[0]["end_reason"].startswith("reaped: past its deadline by 3.0 min")
    assert no_live_processes(cloud)
