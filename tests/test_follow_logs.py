"""Following over Vast's logs API, which returns only the last 1,000 lines (unless `tail`) and greps
with `filter`: a stage that prints more than a tail between two fetches must not cost the launcher its
stage, result or end-reason lines, and the last lines stay readable after the instance is gone."""

import json

from conftest import cloud_env, no_live_processes, run_cli, stage_config, wait_for

from vast_launch.vast.progress import new_lines

FLOOD = 5000


def test_new_lines_follow_by_content_not_by_length():
    assert new_lines([], ["a", "b"]) == (["a", "b"], False)
    assert new_lines(["a", "b"], ["a", "b", "c"]) == (["c"], False)
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == (["d", "e"], False)  # the tail moved on
    assert new_lines(["a", "x", "x"], ["x", "x", "x"]) == (["x"], False)  # repeats: the longest overlap wins
    assert new_lines(["a", "b"], ["a", "b"]) == ([], False)
    assert new_lines(["a", "b"], ["y", "z"]) == (["y", "z"], True)  # a gap: more was written than a tail holds


def _launch(repo, lc, *extra):
    return run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", *extra], cwd=repo, env=cloud_env(lc))


def _row(repo):
    (row,) = json.loads(run_cli(["status", "--json"], cwd=repo).stdout)
    return row


def test_a_stage_printing_more_than_a_tail_loses_no_stage_or_result(repo_factory, cloud):
    from vast_launch.ledger import Ledger

    repo = repo_factory(
        stage_config(
            [
                {"name": "operator", "command": "echo operator-done"},
                {"name": "diffusion_residual", "command": f"seq {FLOOD}"},
                {"name": "consistency_distill", "command": "echo distill-done"},
            ]
        )
    )
    p = _launch(repo, cloud, "--follow")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    for i, name in enumerate(("operator", "diffusion_residual", "consistency_distill"), 1):
        assert f"stage {i}/3 {name}" in p.stdout
    row = _row(repo)
    assert row["state"] == "destroyed" and row["end_reason"].startswith("completed: all stages done"), row
    with Ledger() as ledger:
        stages = {st["name"]: st for st in ledger.stages(row["launch_id"])}
        (kept,) = [json.loads(e["detail"]) for e in ledger.events(row["launch_id"]) if e["state"] == "log_tail"]
    assert set(stages) == {"operator", "diffusion_residual", "consistency_distill"}
    assert all(st["end"] is not None and st["rc"] == 0 for st in stages.values()), stages
    assert kept["gaps"] >= 1  # the flood did scroll the stage lines out of a fetch: the case this is about
    assert no_live_processes(cloud)

    # The instance and its logs are gone; the launcher kept the last lines.
    logs = run_cli(["logs", row["launch_id"], "--tail", "3"], cwd=repo)
    assert logs.returncode == 0, logs.stderr
    assert "is destroyed: the last 3 lines its launcher kept" in logs.stderr
    assert len(logs.stdout.splitlines()) == 3
    assert any("destroying instance" in ln or "result rc=0" in ln for ln in logs.stdout.splitlines())


def test_logs_api_tails_1000_lines_unless_asked_and_filters(repo_factory, cloud):
    from vast_launch.vast.sdk import VastProvider

    repo = repo_factory(stage_config([{"name": "a", "command": f'seq {FLOOD}; until [ -f "$VL_W/go_on" ]; do sleep 0.1; done'}]))
    assert _launch(repo, cloud, "--detach").returncode == 0
    (inst,) = cloud.cloud.instances.values()
    provider = VastProvider(cloud.api_key, url=cloud.url)
    assert wait_for(lambda: str(FLOOD) in provider.logs(inst.id).splitlines(), 60)
    default = provider.logs(inst.id).splitlines()
    assert len(default) == 1000 and default[-1] == str(FLOOD)
    assert len(provider.logs(inst.id, tail=2500).splitlines()) == 2500
    events = provider.logs(inst.id, tail=100_000, filter="vast-launch] ").splitlines()
    assert events and all("[vast-launch] " in ln for ln in events)
    assert any("stage 1/1 a: start" in ln for ln in events)  # scrolled out of the default tail long ago
    next(inst.workdir.glob("vl-*")).joinpath("go_on").touch()
    assert wait_for(lambda: inst.status == "destroyed", 60)
    assert no_live_processes(cloud)


def test_a_silent_stage_gets_a_heartbeat_line_with_its_run_time_and_cost(repo_factory, cloud, tmp_path):
    """The stage waits for a file the test writes only after the launcher printed a heartbeat."""
    from test_lifecycle import read_until, start_cli

    flag = tmp_path / "go-on"
    repo = repo_factory(stage_config([{"name": "quiet", "command": 'while [ ! -e "$FLAG" ]; do sleep 0.2; done'}]))
    proc = start_cli(
        ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow", "--heartbeat-seconds", "1", "--env", f"FLAG={flag}"],
        cwd=repo,
        env=cloud_env(cloud),
    )
    seen = read_until(proc, "stage 1/1 quiet")
    seen += read_until(proc, "no output for")
    flag.touch()
    out = seen + proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out[-3000:]
    beat = [line for line in out.splitlines() if "quiet running for" in line][0]
    assert beat.lstrip().startswith("[") and "$" in beat.split("]")[0], beat  # elapsed and cost so far
    assert no_live_processes(cloud)


def test_status_table_names_its_columns_and_watch_ends_when_the_launch_does(repo_factory, cloud, tmp_path):
    from test_lifecycle import read_until, start_cli

    flag = tmp_path / "go-on"
    repo = repo_factory(stage_config([{"name": "quiet", "command": 'while [ ! -e "$FLAG" ]; do sleep 0.2; done'}]))
    launcher = start_cli(
        ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow", "--env", f"FLAG={flag}"],
        cwd=repo,
        env=cloud_env(cloud),
    )
    read_until(launcher, "stage 1/1 quiet")
    watch = start_cli(["status", "--watch", "--interval", "0.2"], cwd=repo, env=cloud_env(cloud))
    seen = read_until(watch, "quiet ")  # the stage column of a running launch
    seen += read_until(watch, "\n")
    header = [line for line in seen.splitlines() if line.startswith("launch")][0].split()
    assert header[:4] == ["launch", "state", "stage", "runtime"] and "deadline" in header, header
    row = [line for line in seen.splitlines() if line.startswith("t-")][-1]
    assert " running " in row and " UTC (in " in row, row  # the deadline of a live launch
    flag.touch()
    assert launcher.wait(timeout=900) == 0
    out = seen + watch.communicate(timeout=900)[0]
    assert watch.returncode == 0 and out.rstrip().endswith("every launch shown has ended"), out[-2000:]
    last = [line for line in out.splitlines() if line.startswith("t-")][-1]
    assert " destroyed " in last and "quiet done" in last, last


def test_the_follower_acknowledges_the_result_so_the_instance_need_not_wait_out_its_bound(repo_factory, cloud):
    """Without an outputs store the instance keeps its log until its follower has seen the result (at most
    protocol.ACK_WAIT_SECONDS): the follower says so in the label, and the instance stops waiting at once."""
    repo = repo_factory(stage_config([{"name": "a", "command": "echo trained"}]))
    p = _launch(repo, cloud, "--follow")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    (inst,) = cloud.cloud.instances.values()
    assert inst.status == "destroyed" and inst.label.endswith(" result-seen"), inst.label
    boot = inst.log_path.read_text()
    assert "its launcher saw the result" in boot and "no acknowledgement" not in boot, boot[-2000:]
    assert "stage 1/1 a" in p.stdout and "trained" in p.stdout


def test_the_stores_copy_lacks_the_last_lines_seen_live_and_replays_nothing():
    seen = ["a", "b", "result rc=0", "final sync: 1 file(s)", "destroying instance 7"]
    stored = ["a", "b", "result rc=0"]  # synced before its last two lines were written
    assert new_lines(seen, stored, stored=True) == ([], False)
    assert new_lines(seen[:2], stored + ["late"], stored=True) == (["result rc=0", "late"], False)
    assert new_lines(seen, stored) == (stored, True)  # a live tail that does not overlap is a gap
