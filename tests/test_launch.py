"""The launch path against the local cloud, through the real vastai SDK, with real git remotes."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import cloud_env, creates, git, no_live_processes, run_cli, stage_config

ECHO_STAGES = [{"name": "a", "command": "echo stage-a-ran"}, {"name": "b", "command": "echo stage-b-ran"}]


def launch(repo, lc, *extra, env=None):
    return run_cli(
        ["--auto-shutdown", "--config", "configs/test.yaml", "--follow", "--yes", *extra],
        cwd=repo,
        env={**cloud_env(lc), **(env or {})},
    )


def status(repo):
    return json.loads(run_cli(["status", "--json"], cwd=repo).stdout)


def test_launch_through_vast_api_clones_pushed_commit_and_self_destroys(repo_factory, cloud):
    repo = repo_factory(stage_config(ECHO_STAGES))
    head = git(repo, "rev-parse", "HEAD")
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    assert "stage-a-ran" in p.stdout and "stage-b-ran" in p.stdout
    (inst,) = cloud.cloud.instances.values()
    assert inst.destroyed_by == "instance"  # the trap destroyed it through the API, not the launcher
    clone = next(inst.workdir.glob("vl-*")) / "repo"
    assert git(clone, "rev-parse", "HEAD") == head
    (row,) = status(repo)
    assert row["state"] == "destroyed" and row["commit"] == head
    assert row["end_reason"].startswith("completed")
    assert no_live_processes(cloud)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("unpushed", "is not on remote 'origin'"),
        ("detached", "detached HEAD"),
        ("dirty", "uncommitted changes (README.md)"),  # the path whole: porcelain's first column is a space
        ("malformed", "malformed YAML at line"),
        ("unknown_key", "unknown key 'resources.gpu_nmes'"),
        ("negative_price", "resources.max_dph: Input should be greater than 0"),
    ],
)
def test_bad_input_one_line_exit_1_nothing_rented(repo_factory, cloud, breakage, expected):
    cfg = stage_config(ECHO_STAGES)
    if breakage == "unknown_key":
        cfg["resources"]["gpu_nmes"] = ["RTX_4090"]
    if breakage == "negative_price":
        cfg["resources"]["max_dph"] = -1
    repo = repo_factory(cfg)
    if breakage == "unpushed":
        (repo / "new.txt").write_text("x")
        git(repo, "add", "new.txt")
        git(repo, "commit", "-qm", "not pushed")
    elif breakage == "detached":
        git(repo, "checkout", "-q", "--detach", "HEAD")
    elif breakage == "dirty":
        (repo / "README.md").write_text("changed\n")
    elif breakage == "malformed":
        (repo / "configs" / "test.yaml").write_text("name: t\nstages: [a, b\nresources: {\n")
        git(repo, "commit", "-qam", "broken yaml")
        git(repo, "push", "-q")
    p = launch(repo, cloud)
    assert p.returncode == 1
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert creates(cloud) == []


def test_not_a_git_repo(tmp_path, cloud):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "test.yaml").write_text(yaml.safe_dump(stage_config(ECHO_STAGES)))
    p = launch(tmp_path, cloud)
    assert p.returncode == 1 and "not inside a git repository" in p.stderr and len(p.stderr.splitlines()) == 1
    assert creates(cloud) == []


def test_allow_dirty_warns_and_ships_the_pushed_commit(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "cat README.md | head -1"}]))
    (repo / "README.md").write_text("LOCAL EDIT NOT SHIPPED\n")
    p = launch(repo, cloud, "--allow-dirty")
    assert p.returncode == 0, p.stderr
    assert "NOT shipped" in p.stdout
    assert "LOCAL EDIT NOT SHIPPED" not in p.stdout


def test_vanished_offer_moves_to_next(repo_factory, cloud):
    repo = repo_factory(stage_config(ECHO_STAGES))
    cloud.cloud.faults.update({"vanish_on_create": [1001]})
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    assert "offer 1001 is gone" in p.stdout
    assert [e["path"] for e in creates(cloud)] == ["/api/v0/asks/1001/", "/api/v0/asks/1002/"]
    (inst,) = cloud.cloud.instances.values()
    assert inst.offer["id"] == 1002


def test_an_offer_someone_rented_is_not_tried_and_comes_back_when_their_instance_ends(repo_factory, cloud):
    import requests

    repo = repo_factory(stage_config(ECHO_STAGES))
    cloud.cloud.set_offer(1001, slots=1)
    theirs = requests.put(
        f"{cloud.url}/api/v0/asks/1001/",
        json={"image": "someone-else", "disk": 10, "onstart": "sleep 600"},
        headers={"Authorization": f"Bearer {cloud.api_key}"},
        timeout=30,
    ).json()["new_contract"]
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    assert [e["path"] for e in creates(cloud)] == ["/api/v0/asks/1001/", "/api/v0/asks/1002/"]  # no failed try
    assert "is gone" not in p.stdout

    cloud.cloud.destroy(theirs, by="account")
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    assert creates(cloud)[-1]["path"] == "/api/v0/asks/1001/"
    assert all(i.status == "destroyed" for i in cloud.cloud.instances.values())


def test_429_bursts_are_retried(repo_factory, cloud):
    repo = repo_factory(stage_config(ECHO_STAGES))
    cloud.cloud.faults.update({"rate_limit": {"/api/v0/bundles": 3, "/api/v0/asks/": 2}})
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    statuses = [e["status"] for e in cloud.cloud.events if e["path"] == "/api/v0/bundles/"]
    assert statuses == [429, 429, 429, 200]
    assert len(creates(cloud)) == 3 and len(cloud.cloud.instances) == 1


def test_create_error_that_still_created_is_destroyed(repo_factory, cloud):
    repo = repo_factory(stage_config(ECHO_STAGES))
    cloud.cloud.faults.update({"create_error_but_creates": 1})
    p = launch(repo, cloud)
    assert p.returncode == 0, p.stderr
    first, second = sorted(cloud.cloud.instances.values(), key=lambda i: i.id)
    assert first.status == "destroyed" and first.destroyed_by == "account"
    assert second.destroyed_by == "instance"


def test_onstart_small_and_secret_free(repo_factory, cloud):
    repo = repo_factory(stage_config(ECHO_STAGES, wandb={"mode": "online"}))
    secrets = {"WANDB_API_KEY": "wandb-secret-value-1234567890", "VAST_LAUNCH_GIT_TOKEN": "ghp_secretgittoken987"}
    p = launch(repo, cloud, env=secrets)
    assert p.returncode == 0, p.stderr
    (inst,) = cloud.cloud.instances.values()
    assert len(inst.onstart) < 4000
    for value in secrets.values():
        assert value not in inst.onstart
        assert value not in p.stdout + p.stderr
    assert inst.env["WANDB_API_KEY"] == secrets["WANDB_API_KEY"]  # secrets travel in env only
    for f in (Path(repo).parent / "home").rglob("*"):
        if f.is_file():
            assert secrets["WANDB_API_KEY"].encode() not in f.read_bytes()

    dry = run_cli(["--config", "configs/test.yaml", "--dry-run"], cwd=repo, env={**cloud_env(cloud), **secrets})
    assert dry.returncode == 0, dry.stderr
    assert "***redacted***" in dry.stdout and "DRY RUN" in dry.stdout
    for value in secrets.values():
        assert value not in dry.stdout
    assert len(creates(cloud)) == 1  # the dry run rented nothing


def test_check_json_reports_each_failure(repo_factory):
    repo = repo_factory(stage_config(ECHO_STAGES))
    p = run_cli(["check", "--config", "configs/test.yaml", "--target", "vast", "--json"], cwd=repo)
    out = json.loads(p.stdout)
    assert p.returncode == 1 and not out["ok"]
    remote = repo.parent / (repo.name + "-remote.git")
    assert out["failures"] == [
        f"the remote {remote} is a path on this machine: an instance on Vast cannot clone it "
        "(push to an https or ssh remote, or set code.repo)",
        "no Vast API key: set VAST_API_KEY or run `vastai set api-key KEY`",
    ]
    ok = run_cli(["check", "--config", "configs/test.yaml", "--target", "local"], cwd=repo)
    assert ok.returncode == 0 and "is on the remote" in ok.stdout


def test_check_asks_the_remote_not_the_stale_tracking_ref(repo_factory, cloud):
    """The remote's branch was reset after our push; origin/main here still shows our commit."""
    repo = repo_factory(stage_config(ECHO_STAGES))
    first = git(repo, "rev-parse", "HEAD")
    (repo / "note.txt").write_text("a fix\n")
    git(repo, "add", "note.txt")
    git(repo, "commit", "-q", "-m", "a fix")
    git(repo, "push", "-q", "origin", "main")
    remote = repo.parent / (repo.name + "-remote.git")
    git(remote, "update-ref", "refs/heads/main", first)  # someone force-pushed the fix away
    assert git(repo, "rev-parse", "origin/main") == git(repo, "rev-parse", "HEAD")  # stale, still says pushed
    p = run_cli(["check", "--config", "configs/test.yaml", "--target", "local"], cwd=repo)
    assert p.returncode == 1, p.stdout
    assert "is not on remote 'origin'" in p.stderr, p.stderr
    launch = run_cli(["--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env=cloud_env(cloud))
    assert launch.returncode == 1 and not creates(cloud)


def test_a_remote_that_fails_or_never_answers_stops_the_launch_in_one_line(repo_factory, cloud):
    """`git ls-remote` failing, and a remote that accepts the connection and then says nothing: the check
    names the cause, nothing is rented, and no git process is left behind."""
    import socket
    import threading

    repo = repo_factory(stage_config(ECHO_STAGES))
    git(repo, "remote", "set-url", "origin", str(repo.parent / "no-such-remote.git"))
    p = run_cli(["check", "--config", "configs/test.yaml", "--target", "local"], cwd=repo)
    failures = [line for line in p.stderr.splitlines() if "cannot ask remote 'origin'" in line]
    assert p.returncode == 1 and len(failures) == 1 and "does not appear to be a git repository" in failures[0], p.stderr

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(8)], daemon=True).start()
    git(repo, "remote", "set-url", "origin", f"git://127.0.0.1:{silent.getsockname()[1]}/repo.git")
    try:
        launch = run_cli(
            ["--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env={**cloud_env(cloud), "VAST_LAUNCH_GIT_TIMEOUT": "2"}
        )
        assert launch.returncode == 1 and "the remote did not answer within 2 s (VAST_LAUNCH_GIT_TIMEOUT)" in launch.stderr
        assert held, "git never connected: the timeout was not what stopped it"
        assert not creates(cloud)
        bad = run_cli(
            ["check", "--config", "configs/test.yaml", "--target", "local"], cwd=repo, env={"VAST_LAUNCH_GIT_TIMEOUT": "soon"}
        )
        assert bad.returncode == 1 and "VAST_LAUNCH_GIT_TIMEOUT='soon': expected seconds" in bad.stderr
    finally:
        for conn, _ in held:
            conn.close()
        silent.close()


def test_a_2000_character_setup_and_ten_stages_fit_and_run_locally(repo_factory):
    steps = [f"echo setup-step-{i:03d} >> setup.log" for i in range(200)]
    setup = " && ".join(steps)
    setup = setup[: setup.rindex(" && ", 0, 2000)]  # whole steps only, just under 2,000 characters
    setup += " && true" + " " * (2000 - len(setup) - 8)
    ran = setup.count("echo setup-step-")
    stages = [{"name": f"s{i}", "command": f"echo stage-{i} saw $(wc -l < setup.log) setup lines"} for i in range(10)]
    repo = repo_factory(stage_config(stages, code={"setup": setup}))
    assert len(setup) == 2000
    p = run_cli(["--local", "--auto-shutdown", "--config", "configs/test.yaml"], cwd=repo, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    for i in range(10):
        assert f"stage-{i} saw {ran} setup lines" in p.stdout, p.stdout[-3000:]
    assert "completed: all stages done" in p.stdout
