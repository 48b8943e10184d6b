"""logs and ssh over paramiko against a real sshd on loopback (the instance's SSH endpoint)."""

import os
import subprocess
import threading

from conftest import BIN, cloud_env, run_cli, stage_config, wait_for

WAIT_STAGE = 'echo first-line; while [ ! -f "$VL_W/go" ]; do sleep 0.2; done; echo second-line'


def detached(repo_factory, lc, command=WAIT_STAGE):
    repo = repo_factory(stage_config([{"name": "a", "command": command}]))
    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--detach"], cwd=repo, env=cloud_env(lc))
    assert p.returncode == 0, p.stderr
    (inst,) = lc.cloud.instances.values()
    assert wait_for(lambda: "first-line" in inst.log_path.read_text(), 30)
    return repo, inst


def test_ssh_runs_a_command_on_the_instance_and_returns_its_status(repo_factory, ssh_cloud, sshd):
    repo, inst = detached(repo_factory, ssh_cloud)
    env = cloud_env(ssh_cloud)
    p = run_cli(["ssh", "-i", str(sshd.key_file), str(inst.id), "cat", "/tmp/vl-*.dir; echo via-ssh"], cwd=repo, env=env)
    assert p.returncode == 0, p.stderr
    assert "via-ssh" in p.stdout and str(inst.workdir) in p.stdout
    p = run_cli(["ssh", "-i", str(sshd.key_file), str(inst.id), "exit", "3"], cwd=repo, env=env)
    assert p.returncode == 3
    # all of a long output, to its last line: the exit status can arrive before the last data
    for _ in range(3):
        p = run_cli(["ssh", "-i", str(sshd.key_file), str(inst.id), "seq 1 200000; echo end >&2; echo done"], cwd=repo, env=env)
        assert p.returncode == 0 and p.stderr == "end\n", p.stderr
        assert p.stdout == "".join(f"{i}\n" for i in range(1, 200001)) + "done\n", p.stdout[-200:]
    next(inst.workdir.glob("vl-*")).joinpath("go").touch()
    assert wait_for(lambda: inst.status == "destroyed", 30)


def test_logs_follow_over_ssh_streams_until_the_instance_is_gone(repo_factory, ssh_cloud, sshd):
    repo, inst = detached(repo_factory, ssh_cloud)
    env = {**os.environ, **cloud_env(ssh_cloud)}
    proc = subprocess.Popen(
        [str(BIN / "vast-launch"), "logs", str(inst.id), "--follow", "--via", "ssh", "-i", str(sshd.key_file)],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any("first-line" in line for line in lines), 30), proc.stderr
        # the API was not used: only SSH was (the local cloud records every request)
        assert not [e for e in ssh_cloud.cloud.events if "request_logs" in e["path"]]
        next(inst.workdir.glob("vl-*")).joinpath("go").touch()
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    text = "".join(lines)
    assert "second-line" in text and "destroying instance" in text
    assert inst.status == "destroyed"


def test_logs_fall_back_to_the_api_when_ssh_fails(repo_factory, cloud, sshd):
    """An instance without a reachable SSH endpoint: the Vast logs API answers instead."""
    cloud.cloud.ssh_port = 1  # nothing listens on port 1
    repo, inst = detached(repo_factory, cloud)
    p = run_cli(["logs", str(inst.id), "-i", str(sshd.key_file)], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stderr
    assert "first-line" in p.stdout and "using the Vast logs API" in p.stderr
    strict = run_cli(["logs", str(inst.id), "--via", "ssh", "-i", str(sshd.key_file)], cwd=repo, env=cloud_env(cloud))
    assert strict.returncode == 1 and strict.stderr.startswith("error: ssh root@127.0.0.1:1")
    next(inst.workdir.glob("vl-*")).joinpath("go").touch()
    assert wait_for(lambda: inst.status == "destroyed", 30)
