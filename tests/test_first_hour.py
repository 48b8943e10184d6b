"""A new user's first hour: output that reads right once, a plain repository from `init` to a launch, a
profile flag that is checked against the config in hand, and a question that shows what would be rented."""

import json
import os
import pty
import re
import subprocess

from conftest import BIN, cloud_env, creates, git, invoke, run_cli, stage_config
from test_lifecycle import read_until

from vast_launch.ledger import Ledger

# UTF-8 text, and bytes that are no UTF-8 at all (a latin-1 é, a lone continuation byte)
STAGE = r"printf 'accuracy ± 0.1 café 🚀\n'; printf 'raw \351\200 bytes\n'; echo end-of-stage"


def test_non_ascii_and_invalid_bytes_appear_once_and_right_everywhere(repo_factory, tmp_path):
    repo = repo_factory(stage_config([{"name": "s", "command": STAGE}]))
    p = run_cli(["--local", "--config", "configs/test.yaml"], cwd=repo)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert sum("accuracy ± 0.1 café 🚀" in ln for ln in lines) == 1, p.stdout
    assert sum(re.search(r"raw \ufffd+ bytes", ln) is not None for ln in lines) == 1, p.stdout  # undecodable: marked
    assert "Â±" not in p.stdout and "cafÃ©" not in p.stdout
    assert sum("end-of-stage" in ln for ln in lines) == 1 and sum("stage 1/1 s: done" in ln for ln in lines) == 1
    (row,) = json.loads(run_cli(["status", "--json"], cwd=repo).stdout)
    with Ledger() as ledger:
        assert [e["state"] for e in ledger.events(row["launch_id"])].count("teardown") == 1
    logs = run_cli(["logs", row["launch_id"]], cwd=repo)
    assert logs.stdout.count("accuracy ± 0.1 café 🚀") == 1 and len(re.findall(r"raw \ufffd+ bytes", logs.stdout)) == 1, logs.stdout
    report = run_cli(["report", row["launch_id"], "--dest", str(tmp_path / "r")], cwd=repo)
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "r" / f"{row['launch_id']}.md").read_text()
    assert md.count("accuracy ± 0.1 café 🚀") == 1 and "## The log's last" in md, md


def test_a_plain_repository_after_init_launches_with_a_bare_command(tmp_path):
    """No config named, no profiles, an output folder left by a local run: init sees to all of it."""
    repo, remote = tmp_path / "plain", tmp_path / "plain.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(
        "import os\nopen(os.path.join(os.environ['VL_OUT'], 'model.txt'), 'w').write('w')\nprint('trained')\n"
    )
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "a plain project")
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "-u", "origin", "main")
    (repo / "out").mkdir()
    (repo / "out" / "old-run.txt").write_text("from running train.py here\n")  # an output folder, untracked

    blocked = run_cli(["--local"], cwd=repo)
    assert blocked.returncode == 1 and "no config here: pass --config PATH, or write one with `vast-launch init`" in blocked.stderr
    init = run_cli(["init"], cwd=repo)
    assert init.returncode == 0, init.stderr
    assert "added to .gitignore: /out" in init.stdout and "git add vast-launch.yaml .gitignore" in init.stdout, init.stdout
    git(repo, "add", "vast-launch.yaml", ".gitignore")
    git(repo, "commit", "-qm", "vast-launch config")
    git(repo, "push", "-q")
    p = run_cli(["--local"], cwd=repo)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "| trained" in p.stdout and "completed: all stages done" in p.stdout
    (row,) = json.loads(run_cli(["status", "--json"], cwd=repo).stdout)
    report = run_cli(["report", row["launch_id"]], cwd=repo)
    assert "profile" not in report.stdout.splitlines()[3], report.stdout  # a project without profiles shows none
    assert git(repo, "status", "--porcelain") == ""


def test_a_profile_flag_is_checked_against_the_config_in_hand(repo_factory):
    with_profiles = repo_factory(
        stage_config([{"name": "a", "command": "true"}], train={"profile": "small", "profiles": {"small": {}}})
    )
    without = repo_factory(stage_config([{"name": "a", "command": "true"}]))
    for repo, expected in (
        (with_profiles, "--profile nosuch: not one of ['small'] (train.profiles)"),
        (without, "--profile nosuch: configs/test.yaml has no train.profiles to choose from"),
    ):
        p = invoke(["--local", "--config", "configs/test.yaml", "--profile", "nosuch"], repo)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and lines == [f"error: {expected}"], p.stderr
    help_text = invoke(["launch", "--help"], without).stdout
    assert "(smoke, full)" not in help_text and "train.profiles entry of the config" in help_text


def test_the_question_comes_after_the_checks_and_shows_the_offer(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "true"}], lifecycle={"max_hours": 2, "max_cost_usd": 5}))
    outs = {}
    for answer, code in ((b"n\n", 1), (b"y\n", 0)):
        master, slave = pty.openpty()  # a terminal: the launcher asks
        proc = subprocess.Popen(
            [str(BIN / "vast-launch"), "--config", "configs/test.yaml", "--follow"],
            cwd=repo,
            env={**os.environ, **cloud_env(cloud)},
            text=True,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(slave)
        try:
            asked = read_until(proc, "? [Y/n]: ")
            os.write(master, answer)
            outs[answer] = asked + proc.communicate(timeout=600)[0]
        finally:
            os.close(master)
        assert "check     config, git, credentials" in asked.split("Rent offer")[0]  # checked before asking
        question = asked.splitlines()[-1]
        assert question.startswith("Rent offer 1001 (Local CPU x1) at $0.000/h, hard deadline ") and "(2 h), budget $5?" in question
        assert proc.returncode == code, outs[answer][-2000:]
        if answer == b"n\n":
            assert "nothing rented: not confirmed" in outs[answer] and creates(cloud) == []
    assert len(creates(cloud)) == 1  # only the confirmed launch rented
