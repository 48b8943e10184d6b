"""Bad input gets one clear line and leaves nothing behind; credentials in a remote URL go nowhere."""

import json
import os
import stat

import pytest
import yaml
from conftest import PROJECT, git, run_cli, stage_config

from vast_launch.errors import UserError
from vast_launch.gitcheck import public_url

ECHO = [{"name": "a", "command": "echo a"}]


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["resources"].update(num_gpus=True), "resources.num_gpus: a number is expected, not true/false"),
        (lambda c: c["lifecycle"].update(max_hours=float("nan")), "lifecycle.max_hours: Input should be a finite number"),
        (lambda c: c["resources"].update(max_dph=float("inf")), "resources.max_dph: Input should be a finite number"),
    ],
)
def test_config_values_yaml_would_coerce_are_refused(tmp_path, edit, expected):
    from vast_launch.config import load_config

    cfg = stage_config(ECHO)
    edit(cfg)
    with pytest.raises(UserError) as err:
        load_config(_write(tmp_path, yaml.safe_dump(cfg)))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_yaml_aliases_and_huge_files_are_refused(tmp_path):
    from vast_launch.config import load_config

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    with pytest.raises(UserError, match="YAML aliases"):
        load_config(_write(tmp_path, bomb))
    with pytest.raises(UserError, match="is not a config"):
        load_config(_write(tmp_path, "# " + "x" * 1_100_000))
    assert load_config(PROJECT / "configs" / "burgers.yaml").stages  # the shipped config has no alias


def test_public_url_drops_credentials_only():
    assert public_url("https://user:s3cr3t@github.com/o/r.git") == ("https://github.com/o/r.git", True)
    assert public_url("https://ghp_tok@github.com/o/r.git") == ("https://github.com/o/r.git", True)
    assert public_url("ssh://git@github.com/o/r.git") == ("ssh://git@github.com/o/r.git", False)
    assert public_url("git@github.com:o/r.git") == ("git@github.com:o/r.git", False)
    assert public_url("/srv/git/r.git") == ("/srv/git/r.git", False)


def test_credentials_in_the_remote_url_are_never_shown_or_stored(repo_factory, tmp_path):
    repo = repo_factory(stage_config(ECHO))
    secret = "s3cr3t-in-url-4f1b"
    git(repo, "remote", "set-url", "origin", f"https://user:{secret}@127.0.0.1:9/o/r.git")  # nothing listens
    p = run_cli(["check", "--config", "configs/test.yaml", "--target", "local", "--json"], cwd=repo)
    out = json.loads(p.stdout)
    assert p.returncode == 1 and not out["ok"]
    assert any("https://127.0.0.1:9/o/r.git" in f for f in out["failures"]), out
    dry = run_cli(["--local", "--config", "configs/test.yaml", "--dry-run"], cwd=repo)
    for text in (p.stdout, p.stderr, dry.stdout, dry.stderr):
        assert secret not in text
    home = tmp_path / "home"
    for path in home.rglob("*") if home.exists() else []:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_state_is_owner_only_from_creation(repo_factory, tmp_path):
    repo = repo_factory(stage_config(ECHO))
    run_cli(["status"], cwd=repo)
    assert not (tmp_path / "home").exists()  # a command that only reads creates no state dir
    # a first local launch creates the state dir (and a parent of it) itself
    fresh = tmp_path / "new-parent" / "home"
    p = run_cli(["--local", "--auto-shutdown", "--config", "configs/test.yaml"], cwd=repo, env={"VAST_LAUNCH_HOME": str(fresh)})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for d in (fresh.parent, fresh, fresh / "local", fresh / "local" / "cloud"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    # and everything in it, down to the run's stored log and outputs, from creation (the instance's own
    # files, its clone of the repo among them, went with it)
    made = [p for p in fresh.rglob("*") if not p.is_symlink()]
    assert any(p.name == "boot-1.log" for p in made) and any(p.name == "result.json" for p in made)
    assert not any(p.name == "HEAD" and ".git" in p.parts for p in made)
    assert [p for p in made if stat.S_IMODE(p.lstat().st_mode) & 0o077] == []
    # a file for the user's own repo keeps the user's mode
    os.umask(previous := os.umask(0o022))
    init = run_cli(["init", "--out", "starter.yaml"], cwd=repo, env={"VAST_LAUNCH_HOME": str(fresh)})
    assert init.returncode == 0, init.stderr
    assert stat.S_IMODE((repo / "starter.yaml").stat().st_mode) == 0o666 & ~previous


def test_launch_ids_are_prefixes_not_like_patterns(tmp_path):
    from vast_launch.ledger import Ledger

    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.create("burgers-20261124-080000-ab12", "destroyed")
        assert ledger.find("burgers-2026")["id"] == "burgers-20261124-080000-ab12"
        for typed in ("%", "_", "burgers%", "BURGERS-2026", ""):
            assert ledger.find(typed) is None, typed


def test_a_mistyped_command_is_named_with_the_closest_one(tmp_path):
    p = run_cli(["statsu"], cwd=tmp_path)
    assert p.returncode == 2 and "no such command 'statsu'. Did you mean `vast-launch status`?" in p.stderr, p.stderr
    p = run_cli(["frobnicate"], cwd=tmp_path)
    assert p.returncode == 2 and "no such command 'frobnicate'" in p.stderr and "Traceback" not in p.stderr
