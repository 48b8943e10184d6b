"""vast-launch as a tool: the built wheel, installed on its own, writes a starter config with `init` for a
repository that has nothing of this project in it (no `ups`, no scripts), launches it, and leaves it clean."""

import json
import re
import subprocess
import sys
import sysconfig

import yaml
from conftest import PROJECT, git

PLAIN_TRAIN = """import os, sys
print("plain-train step 1 of 1", flush=True)
with open(os.path.join(os.environ["VL_OUT"], "model.txt"), "w") as f:
    f.write("weights\\n")
"""


def test_the_built_wheel_launches_a_plain_repository_locally(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(PROJECT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("vast_launch-*.whl")
    venv = tmp_path / "tool"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    tool_python = venv / "bin" / "python"
    site = subprocess.run(
        [str(tool_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", site, str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    # The dependencies come from this environment's site-packages as a plain path: its editable
    # install of this checkout is a .pth hook there, which a path entry does not run.
    (next((venv / "lib").glob("python*")) / "site-packages" / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (venv / "bin" / "vast-launch").write_text(f"#!{tool_python}\nfrom vast_launch.cli import main\nmain()\n")
    (venv / "bin" / "vast-launch").chmod(0o755)
    where = subprocess.run(
        [str(tool_python), "-c", "import vast_launch; print(vast_launch.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site), where  # the wheel's copy, not this checkout

    repo, remote = tmp_path / "plain", tmp_path / "plain-remote.git"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    (repo / "train.py").write_text(PLAIN_TRAIN)
    git(repo, "remote", "add", "origin", str(remote))
    home = tmp_path / "home"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "VAST_LAUNCH_HOME": str(home)}
    tool = str(venv / "bin" / "vast-launch")
    init = subprocess.run([tool, "init"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0 and "wrote vast-launch.yaml" in init.stdout, init.stderr
    written = yaml.safe_load((repo / "vast-launch.yaml").read_text())
    assert written["stages"] == [{"name": "train", "command": "python3 train.py"}], written
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plain project")
    git(repo, "push", "-q", "-u", "origin", "main")

    p = subprocess.run(
        [tool, "--local", "--auto-shutdown", "--config", "vast-launch.yaml"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "plain-train step 1 of 1" in p.stdout and "completed: all stages done" in p.stdout
    run_dir = re.search(r"outputs in (\S+)", p.stdout).group(1)
    assert run_dir.startswith(str(home))
    assert any(path.name == "model.txt" and path.read_text() == "weights\n" for path in home.rglob("model.txt"))
    assert git(repo, "status", "--porcelain") == ""
    rep = subprocess.run([tool, "report", "plain", "--plot", "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr
    shown = json.loads(rep.stdout)
    assert shown["markdown"].startswith(str(home)) and shown["png"].startswith(str(home))
    assert shown["evaluation"] == {} and "Evaluation" not in open(shown["markdown"]).read()
    assert git(repo, "status", "--porcelain") == ""  # the report went to the state dir too
