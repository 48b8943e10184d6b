"""Shared fixtures: real git repositories with real bare remotes, a real local cloud."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI") == "true"
# Waits end on events; their bounds only stop a test that is broken. A loaded 2-core machine runs 10-25x
# slower, so every bound is multiplied by this (it costs nothing when the event comes).
SLACK = float(os.environ.get("VL_TEST_SLACK", "5"))


def git(cwd, *args, check=True):
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {p.stderr}")
    return p.stdout.strip()


def leftover_processes(needle: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose environment or command line contains `needle`, but for pytest's own."""
    want, me, found = needle.encode(), os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except (OSError, IndexError):
            continue
        if b"wandb-core" in cmd and b"--pid\0%d\0" % me in cmd:
            continue  # W&B's service for this pytest process: it serves every in-process run, by design
        if want in env or want in cmd:
            found.append((int(entry), cmd.replace(b"\0", b" ").decode(errors="replace").strip()[:160]))
    return found


def end_processes(procs: list[tuple[int, str]]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in procs:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def no_leaked_processes(tmp_path):
    """Fails the test when a process carrying its temp path (an instance, a launcher, a job) outlives it."""
    yield
    needle = str(tmp_path)
    left = leftover_processes(needle)
    deadline = time.time() + 5
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = leftover_processes(needle)
    if left:
        end_processes(left)
        pytest.fail("processes outlived the test (ended now):\n" + "\n".join(f"  {p} {c}" for p, c in left))
    # nor a file in this machine's /tmp (on Vast, the container's /tmp goes with it)
    files = [f for f in Path("/tmp").glob("vl-*.dir") if _points_into(f, tmp_path)]
    for f in files:
        f.unlink(missing_ok=True)
    assert not files, f"files in /tmp outlived the test (removed now): {files}"


def _points_into(f: Path, tmp_path: Path) -> bool:
    try:  # another worker's instance may remove its own file meanwhile
        return f.read_text().startswith(f"{tmp_path}/")
    except OSError:
        return False


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Each test gets its own ledger, no real credentials, no update checks."""
    monkeypatch.setenv("VAST_LAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VASTAI_NO_UPDATE_CHECK", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in (
        "VAST_API_KEY",
        "VAST_URL",
        "WANDB_API_KEY",
        "WANDB_RUN_GROUP",
        "WANDB_GROUP",
        "SLURM_JOB_ID",
        "SUBMITIT_JOB_ID",
        "WANDB_MODE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    # One compute thread per training (the local cloud passes this on to its instances): with two test
    # workers, torch's default of a thread per core spin-waits against the other worker. A tiny 3-stage
    # training beside two busy loops took 61 s with the default, 12.8 s with one thread.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # git identity for the tests' own commits, from a test-local global config: the user's is never
    # read (a commit.gpgsign there would break the suite) nor written
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[user]\n\tname = vast-launch tests\n\temail = tests@vast-launch.invalid\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))


def project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout
    return [f for f in out.splitlines() if (PROJECT / f).is_file()]


def make_repo(path: Path, config: dict | None = None) -> Path:
    """A copy of this project in a fresh git repo whose 'origin' is a real bare remote, pushed."""
    path.mkdir(parents=True)
    for rel in project_files():
        dest = path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / rel, dest)
    if config is not None:
        (path / "configs" / "test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    remote = path.parent / (path.name + "-remote.git")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    git(path, "remote", "add", "origin", str(remote))
    git(path, "push", "-q", "-u", "origin", "main")
    return path


def stage_config(stages: list, **overrides) -> dict:
    cfg = {
        "name": "t",
        "resources": {"gpu_names": [], "max_dph": 5.0, "min_reliability": 0.9},
        "lifecycle": {"max_hours": 1, "loading_timeout_minutes": 1},
        "code": {"setup": "true"},
        "wandb": {"mode": "offline"},
        "stages": stages,
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


@pytest.fixture
def repo_factory(tmp_path):
    counter = iter(range(1000))

    def make(config: dict | None = None) -> Path:
        return make_repo(tmp_path / f"repo{next(counter)}", config)

    return make


# Commands that need no process of their own (no signals, no process tree, no terminal) run in this process
# through Click's test runner: the same CLI, exit codes and output, without an interpreter start-up each.
# VL_TEST_SUBPROCESS=1 runs every one as a subprocess instead (the layer's own check).
IN_PROCESS = {"status", "report", "cost", "check", "logs", "pull", "offers", "reap", "down", "config-schema", "metrics"}


def in_process(args: list[str]) -> bool:
    """The commands that read or end launches. Launches stay subprocesses: in the test process a launch's
    signal handling, its W&B child and the pid recorded as its launcher's outlived it (a worker later hung
    in wandb.init, another died), and each test that launches pays a training or a wait more than a start-up."""
    return bool(args) and args[0] in IN_PROCESS and "--debug" not in args


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600, input: str | None = None):
    """Run the CLI: in process when it can (IN_PROCESS), else as a subprocess. A subprocess that outlives
    `timeout` gets SIGINT, then SIGTERM, then SIGKILL, so a launcher can still destroy its instance; the
    test then fails with what it printed."""
    if in_process(args) and input is None and os.environ.get("VL_TEST_SUBPROCESS") != "1":
        return invoke(args, cwd, env)
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.Popen(
        [str(BIN / "vast-launch"), *args],
        cwd=cwd,
        env=e,
        text=True,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGINT, 60), (signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            proc.send_signal(sig)
            try:
                out, err = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        raise AssertionError(
            f"vast-launch {' '.join(args)} ran past {timeout} s; stopped it.\nstdout: {out[-3000:]}\nstderr: {err[-3000:]}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def cloud(tmp_path):
    from vast_launch.localcloud import LocalCloud

    with LocalCloud(root=tmp_path / "cloud", loading_seconds=0.2) as lc:
        yield lc


def cloud_env(lc) -> dict:
    return {"VAST_URL": lc.url, "VAST_API_KEY": lc.api_key}


def creates(lc) -> list[dict]:
    return [e for e in lc.cloud.events if e["method"] == "PUT" and e["path"].startswith("/api/v0/asks/")]


def no_live_processes(lc, timeout=10.0) -> bool:
    """True when no process of any instance is alive: none in its process group, none carrying its marker
    (a destroyed instance's handle is gone; a daemon that left the group still carries the marker)."""
    from vast_launch.localcloud.containers import container_pids

    def dead():
        for inst in list(lc.cloud.instances.values()):
            pgid = inst.proc.pid if inst.proc is not None else None
            if container_pids(inst.marker, pgid):
                return False
        return True

    return lc.wait_until(dead, timeout * SLACK)


def wait_for(pred, timeout=30.0, interval=0.1):
    deadline = time.time() + timeout * SLACK
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def load_json(text: str):
    return json.loads(text)


# The suite runs on every core (pytest-xdist, `-n auto` in pyproject): each test has its own temp dir,
# ledger, local cloud and ports; the tests of one session-wide daemon (the SLURM cluster, the sshd) share
# one worker, so each daemon is started once.
SESSION_DAEMONS = {"slurm_cluster": "slurm", "sshd": "sshd"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, group in SESSION_DAEMONS.items():
            if fixture in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(group))
    # the longest tests first, so that no worker starts one when the others are done
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def require_system_part(what: str, missing: list[str]) -> None:
    """Missing system parts fail loudly in CI and skip (with the reason) elsewhere."""
    if not missing:
        return
    msg = f"{what} needs {', '.join(missing)} (installed and started by .ci/run)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    from slurm_cluster import missing_parts, start_cluster

    require_system_part("the SLURM tests", missing_parts())
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm_env(slurm_cluster, monkeypatch):
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    return slurm_cluster.env


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    from sshd_server import missing_parts, start_sshd

    require_system_part("the SSH tests", missing_parts())
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def ssh_cloud(tmp_path, sshd):
    """A local cloud whose instances show the loopback sshd as their SSH endpoint."""
    from vast_launch.localcloud import LocalCloud

    with LocalCloud(root=tmp_path / "cloud", loading_seconds=0.2, ssh_port=sshd.port) as lc:
        yield lc


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API server on loopback (moto's server mode), for the outputs store."""
    from s3_server import missing_parts, start_s3_server

    require_system_part("the S3 store tests", missing_parts())
    server = start_s3_server(tmp_path_factory.mktemp("s3") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """A fresh bucket of the loopback S3 server, its credentials in this test's environment; returns
    (server, outputs section for a config)."""
    import re

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    bucket = "vl-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-") + "-" + os.urandom(3).hex()
    url = s3_server.bucket(bucket)
    return s3_server, {"url": f"{url}/runs", "endpoint_url": s3_server.endpoint, "sync_every_minutes": 0}


def invoke(args: list[str], cwd: Path, env: dict | None = None):
    """The CLI in this process, through Click's test runner: for the many cases that need no process of their
    own (no signals, no process tree). Same exit codes and the same stdout and stderr as `run_cli`."""
    from click.testing import CliRunner

    from vast_launch.cli import main
    from vast_launch.commands.common import Debug

    before, umask = os.getcwd(), os.umask(0o022)  # the CLI narrows the umask: this process keeps its own
    os.umask(umask)
    try:
        os.chdir(cwd)
        r = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    finally:
        os.chdir(before)
        os.umask(umask)
        Debug.on = os.environ.get("VAST_LAUNCH_DEBUG") == "1"  # as a new process would start
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)
