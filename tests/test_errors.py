"""Every command's error path with the provider unreachable: one line, the cause first, no traceback."""

import pytest
from conftest import run_cli, stage_config
from slurm_cluster import free_port

from vast_launch.ledger import Ledger

LAUNCH = "t-20261124-080000-ab12"


@pytest.fixture
def dead_provider(tmp_path, repo_factory):
    """A repo that passes every check, and a ledger row of a launch on a Vast that nothing answers for."""
    url = f"http://127.0.0.1:{free_port()}"  # free, so nothing listens: connection refused
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}]))
    with Ledger() as ledger:
        ledger.create(
            LAUNCH,
            "running",
            target="vast",
            instance_id=4242,
            provider_url=url,
            name="t",
            extra={"launcher_pid": 1, "launcher_host": "gone", "launcher_started": 0},
        )
    return repo, {"VAST_URL": url, "VAST_API_KEY": "k-unreachable"}, url


# (argv, exit code expected, first word of the one line). status and cost show what the ledger knows and warn.
COMMANDS = [
    (["offers", "--config", "configs/test.yaml"], 1, "error:"),
    (["--config", "configs/test.yaml", "--yes"], 1, "error:"),
    (["logs", LAUNCH], 1, "error:"),
    (["down", LAUNCH, "--yes"], 1, "error:"),
    (["ssh", LAUNCH], 1, "error:"),
    (["reap", "--dry-run"], 1, "error:"),
    (["status"], 0, "warning:"),
    (["cost"], 0, "warning:"),
]


@pytest.mark.parametrize("argv, code, word", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_unreachable_provider_is_one_line(dead_provider, argv, code, word):
    repo, env, url = dead_provider
    p = run_cli(argv, cwd=repo, env=env, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert len(lines) == 1 and lines[0].startswith(word), p.stderr
    assert f"cannot reach {url}: connection refused" in lines[0], lines[0]
    with Ledger() as ledger:  # nothing was rented, the row is as it was
        assert [r["id"] for r in ledger.launches(since=None)] == [LAUNCH]
        assert ledger.get(LAUNCH)["state"] == "running"


def test_dns_failure_names_the_cause_and_debug_shows_the_traceback(tmp_path):
    env = {"VAST_URL": "http://vast-launch-test.invalid", "VAST_API_KEY": "k"}
    p = run_cli(["reap", "--dry-run"], cwd=tmp_path, env=env, timeout=300)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "error: cannot reach http://vast-launch-test.invalid: DNS lookup failed (list instances)"
    ], p.stderr
    p = run_cli(["--debug", "reap", "--dry-run"], cwd=tmp_path, env=env, timeout=300)
    assert p.returncode == 1 and "Traceback" in p.stderr and "retrying list instances: DNS lookup failed" in p.stderr


def test_wandb_and_os_errors_are_one_line(tmp_path, repo_factory):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}]))
    p = run_cli(["metrics", "--config", "configs/test.yaml"], cwd=repo, env={"NETRC": str(tmp_path / "no-netrc")}, timeout=300)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("error: W&B: "), p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    p = run_cli(["--local", "--config", "configs/test.yaml"], cwd=repo, env={"VAST_LAUNCH_HOME": str(blocked / "home")})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: ledger {blocked / 'home' / 'ledger.sqlite'}: Not a directory (set VAST_LAUNCH_HOME to a writable directory)"
    ], p.stderr


def test_dry_run_without_a_key_shows_the_query_and_onstart_but_no_offer(repo_factory):
    # the instance would clone a forge's URL (this machine's remote is only asked for the commit)
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}], code={"repo": "https://github.com/example/r.git"}))
    p = run_cli(["--config", "configs/test.yaml", "--dry-run"], cwd=repo, env={"VAST_API_KEY": ""})
    assert p.returncode == 0, p.stderr
    assert "WARNING: no Vast API key: the dry run shows the query and the onstart, but no offer" in p.stdout
    assert '"note": "no Vast API key: no offer searched"' in p.stdout and "--- onstart (" in p.stdout
    p = run_cli(["--config", "configs/test.yaml", "--yes"], cwd=repo, env={"VAST_API_KEY": ""})
    assert p.returncode == 1 and "no Vast API key" in p.stderr, p.stderr


def test_check_takes_the_local_target_and_its_wandb_mode(repo_factory):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}], wandb={"mode": "online"}))
    env = {"WANDB_API_KEY": "", "VAST_API_KEY": ""}
    p = run_cli(["check", "--config", "configs/test.yaml"], cwd=repo, env=env)
    assert p.returncode == 1 and "wandb.mode is online" in p.stderr and "no Vast API key" in p.stderr
    p = run_cli(["check", "--config", "configs/test.yaml", "--local"], cwd=repo, env=env)
    assert p.returncode == 0 and p.stdout.startswith("ok: commit"), p.stderr


def test_a_rejected_key_is_named_and_nothing_is_rented_or_marked_gone(repo_factory, cloud):
    """Vast answers a bad key with 404 auth_error: that 404 must read as the key, never as 'offer gone' or
    'instance already gone'."""
    from conftest import cloud_env

    repo = repo_factory(stage_config([{"name": "a", "command": "sleep 600"}]))
    bad = {**cloud_env(cloud), "VAST_API_KEY": "revoked-key"}
    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes"], cwd=repo, env=bad, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, (p.returncode, p.stderr)
    assert "Vast rejected the API key (HTTP 404 auth_error" in lines[0], lines[0]
    assert cloud.cloud.instances == {}

    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(cloud), timeout=300)
    assert p.returncode == 0, p.stderr
    ((iid, inst),) = cloud.cloud.instances.items()
    with Ledger() as ledger:
        (row,) = ledger.launches(since=None)[:1]
    p = run_cli(["down", row["id"], "--yes"], cwd=repo, env=bad, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and "Vast rejected the API key" in lines[0], p.stderr
    assert inst.status != "destroyed"
    with Ledger() as ledger:
        assert ledger.get(row["id"])["state"] not in ("destroyed", "aborted", "failed")
    p = run_cli(["down", row["id"], "--yes"], cwd=repo, env=cloud_env(cloud), timeout=300)
    assert p.returncode == 0 and inst.status == "destroyed", p.stderr
