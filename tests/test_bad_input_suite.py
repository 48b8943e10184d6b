"""Bad input, case by case: each gets its exit code and exactly one clear line (HTTP: a 4xx JSON body), never a
traceback, and leaves nothing behind: no ledger row, no instance, no file in the repository.

Classes: config files, CLI flags, launch ids, git states (all through the real CLI in a subprocess), and raw
HTTP requests to the local cloud.
"""

import http.client
import json
import subprocess

import pytest
import yaml
from conftest import git, run_cli, stage_config

from vast_launch.ledger import Ledger

GOOD = stage_config([{"name": "a", "command": "echo a"}], train={"profile": "smoke", "profiles": {"smoke": {}}})


def _good(**edits):
    cfg = json.loads(json.dumps(GOOD))
    for dotted, value in edits.items():
        *path, last = dotted.split(".")
        node = cfg
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return yaml.safe_dump(cfg)


# --- config files: (id, file text or bytes, what the one line says) -------------------------------------------
CONFIGS = [
    ("not-utf8", b"name: \xff\xfe\n", "not UTF-8"),
    ("deep-nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("alias", "a: &x [1]\nb: *x\n", "YAML aliases"),
    ("huge", "# " + "x" * 1_100_000, "is not a config"),
    ("top-level-list", "- 1\n- 2\n", "top level must be a mapping"),
    ("malformed", "name: [\n", "malformed YAML at line"),
    ("empty", "", "top level must be a mapping"),
    ("missing-name", yaml.safe_dump({"stages": ["a"]}), "missing required key 'name'"),
    ("missing-stages", yaml.safe_dump({"name": "x"}), "missing required key 'stages'"),
    ("no-stages", _good(stages=[]), "stages: List should have at least 1 item"),
    ("unknown-key", _good(**{"resources.max_dhp": 1}), "unknown key 'resources.max_dhp'"),
    ("bool-as-int", _good(**{"resources.num_gpus": True}), "num_gpus: a number is expected, not true/false"),
    ("nan", _good(**{"lifecycle.max_hours": float("nan")}), "max_hours: Input should be a finite number"),
    ("inf-disk", _good(**{"resources.disk_gb": float("inf")}), "disk_gb: Input should be a finite number"),
    ("huge-gpu-ram", _good(**{"resources.min_gpu_ram_gb": 1e308}), "min_gpu_ram_gb"),
    ("tiny-disk", _good(**{"resources.disk_gb": 4}), "disk_gb: Input should be greater than or equal to 8"),
    ("dph-too-high", _good(**{"resources.max_dph": 1000}), "max_dph: Input should be less than or equal to 128"),
    ("reliability", _good(**{"resources.min_reliability": 2}), "min_reliability"),
    ("bad-stage-name", _good(stages=[{"name": "a b"}]), "stage names are letters"),
    ("duplicate-stage", _good(stages=["a", "a"]), "duplicate stage names ['a']"),
    ("bad-mode", _good(**{"wandb.mode": "sometimes"}), "wandb.mode: Input should be 'online', 'offline'"),
    ("bad-rank", _good(**{"resources.rank_by": "vibes"}), "rank_by"),
    ("long-name", _good(name="x" * 100), "name: String should have at most 64 characters"),
    ("empty-image", _good(**{"resources.image": ""}), "image: String should have at least 1 character"),
    ("profile-missing", _good(train={"profile": "big", "profiles": {"smoke": {}}}), "profile 'big' is not one of"),
    ("pipeline-stage", _good(slurm={"pipelines": {"p": {"zzz": {}}}}), "stage(s) ['zzz'] are not in stages"),
    ("bad-walltime", _good(slurm={"pipelines": {"p": {"a": {"walltime": "soon"}}}}), "expected HH:MM:SS"),
    ("bad-memory", _good(slurm={"pipelines": {"p": {"a": {"memory": "lots"}}}}), "expected a size like 8G"),
    ("tiny-max-hours", _good(**{"lifecycle.max_hours": 1e-9}), "max_hours"),
    ("inf-loading", _good(**{"lifecycle.loading_timeout_minutes": float("inf")}), "loading_timeout_minutes"),
    ("stage-not-mapping", _good(stages=[42]), "stages.0"),
]


def _nothing_left(tmp_path, repo=None):
    home = tmp_path / "home"
    if (home / "ledger.sqlite").exists():
        with Ledger() as ledger:
            assert ledger.launches(since=None) == []
    cloud = home / "local" / "cloud"
    assert not cloud.exists() or not any(cloud.glob("instance-*")), list(cloud.iterdir())
    if repo is not None:
        assert git(repo, "status", "--porcelain") == ""


def _one_line(p, code, text):
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code, (p.returncode, p.stdout[-1500:], p.stderr[-1500:])
    assert "Traceback" not in p.stderr + p.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-1500:]
    assert text in lines[0], lines[0]


@pytest.mark.parametrize("name, text, expected", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_bad_config(tmp_path, name, text, expected):
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    p = run_cli(["--local", "--auto-shutdown", "--config", str(path)], cwd=tmp_path, timeout=300)
    _one_line(p, 1, expected)
    _nothing_left(tmp_path)


# --- CLI flags, launch ids: (argv, exit code, what the one line says) -----------------------------------------
ID = "t-20261124-080000-ab12"
FLAGS = [
    (["--local", "--price", "-1"], 2, "Invalid value for '--price'"),
    (["--local", "--env", "NOEQUALS"], 1, "--env ...: expected KEY=VALUE"),
    (["--local", "--env", "1X=y"], 1, "--env 1X: expected KEY=VALUE"),
    (["--local", "--poll-seconds", "0"], 2, "Invalid value for '--poll-seconds'"),
    (["--local", "--heartbeat-seconds", "-1"], 2, "Invalid value for '--heartbeat-seconds'"),
    (["--local", "--profile", "enormous"], 1, "--profile enormous: not one of"),
    (["--local", "--walltime", "01:00:00"], 1, "--walltime: only with --target slurm"),
    (["--target", "moon"], 2, "Invalid value for '--target'"),
    (["--local", "--wandb-mode", "loud"], 2, "Invalid value for '--wandb-mode'"),
    (["--local", "--no-such-flag"], 2, "No such option '--no-such-flag'"),
    (["--config", "missing.yaml", "--local"], 1, "missing.yaml: config file not found"),
    (["--config", ".", "--local"], 2, "is a directory"),
    (["cost", "--since", "last tuesday"], 1, "--since"),
    (["cost", "--by", "colour"], 2, "Invalid value for '--by'"),
    (["metrics", "--window", "9" * 400 + "d"], 1, "--window"),
    (["reap", "--grace-minutes", "-1"], 2, "Invalid value for '--grace-minutes'"),
    (["status", "--interval", "0"], 2, "Invalid value for '--interval'"),
    (["statsu"], 2, "Did you mean `vast-launch status`?"),
    (["status", str(2**64)], 1, "no launch matches"),
    (["report", str(2**64)], 1, "no launch matches"),
    (["down", str(2**64), "--yes"], 1, "no launch matches"),
    (["status", "%"], 1, "no launch matches '%'"),
    (["report", ID], 1, "no launch matches"),
    (["logs", ID], 1, f"no launch matches '{ID}'"),
    (["ssh", ID], 1, f"no launch matches '{ID}'"),
    (["down"], 1, "name launch ids, or pass --all --yes"),
    (["down", "--all"], 1, "--all destroys every active launch: add --yes"),
    (["init", "--out", "."], 2, "is a directory"),
    (["local-cloud", "serve", "--rentals-per-offer", "0"], 1, "--rentals-per-offer: must be >= 1"),
    (["init", "--out", "configs/test.yaml"], 1, "exists: pass --force to overwrite it"),
]


@pytest.mark.parametrize("argv, code, expected", FLAGS, ids=[" ".join(f[0])[:40] for f in FLAGS])
def test_bad_flag_or_id(repo_factory, tmp_path, argv, code, expected):
    repo = repo_factory(GOOD)
    if argv[0].startswith("--") and "--config" not in argv:
        argv = ["--config", "configs/test.yaml", *argv]
    p = run_cli(argv, cwd=repo, timeout=300)
    _one_line(p, code, expected)
    _nothing_left(tmp_path, repo)


# --- git states: (how to break the repo, what the one line says) -----------------------------------------------
def _detached(repo):
    git(repo, "checkout", "-q", "--detach")


def _no_remote(repo):
    git(repo, "remote", "remove", "origin")


def _unpushed(repo):
    git(repo, "commit", "-q", "--allow-empty", "-m", "local only")


def _dirty(repo):
    (repo / " README.md").write_text("x")  # a leading space: named whole


def _uncommitted_config(repo):
    (repo / "configs" / "new.yaml").write_text((repo / "configs" / "test.yaml").read_text())
    git(repo, "add", "configs/new.yaml")
    git(repo, "commit", "-q", "-m", "new")
    git(repo, "push", "-q")
    git(repo, "rm", "-q", "--cached", "configs/new.yaml")
    git(repo, "commit", "-q", "-m", "untrack")
    git(repo, "push", "-q")
    (repo / ".git" / "info" / "exclude").write_text("configs/new.yaml\n")


GIT_STATES = [
    (_detached, "configs/test.yaml", "detached HEAD at"),
    (_no_remote, "configs/test.yaml", "no git remote 'origin': add one and push"),
    (_unpushed, "configs/test.yaml", "is not on remote 'origin': git push origin main"),
    (_dirty, "configs/test.yaml", 'untracked files (" README.md")'),
    (_uncommitted_config, "configs/new.yaml", "configs/new.yaml is not committed in HEAD"),
]


@pytest.mark.parametrize("breaks, config, expected", GIT_STATES, ids=[g[0].__name__.strip("_") for g in GIT_STATES])
def test_bad_git_state(repo_factory, tmp_path, breaks, config, expected):
    repo = repo_factory(GOOD)
    breaks(repo)
    before = git(repo, "status", "--porcelain")
    p = run_cli(["--local", "--auto-shutdown", "--config", config], cwd=repo, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    assert lines[0].startswith("check failed: ") and expected in lines[0], lines[0]
    assert git(repo, "status", "--porcelain") == before
    _nothing_left(tmp_path)


def test_not_a_repository_and_no_commit(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(GOOD))
    p = run_cli(["--local", "--config", str(cfg)], cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        f"check failed: {tmp_path}: not inside a git repository (the instance clones your commit)"
    ], p.stderr
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    p = run_cli(["--local", "--config", str(cfg)], cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [f"check failed: {tmp_path}: the repository has no commit yet"], (
        p.stderr
    )
    _nothing_left(tmp_path)


# --- HTTP requests to the local cloud: (method, path, body, status, error) -------------------------------------
HTTP = [
    ("PUT", "/api/v0/asks/1001/", b"{not json", 400, "invalid_request"),
    ("PUT", "/api/v0/asks/1001/", b"[1, 2]", 400, "invalid_request"),
    ("PUT", "/api/v0/asks/1001/", b"{}", 400, "invalid_args"),
    ("PUT", "/api/v0/asks/999999/", b'{"image": "x", "disk": 10}', 404, "no_such_ask"),
    ("GET", "/api/v0/instances/abc/", b"", 404, "not_found"),
    ("PUT", "/api/v0/instances/424242/", b'{"state": "stopped"}', 404, "no_such_instance"),
    ("GET", "/api/v0/no/such/route/", b"", 404, "not_found"),
    ("PUT", "/api/v0/instances/bulk/nope/", b'{"ids": "x"}', 404, "not_found"),
    ("PUT", "/api/v0/instances/", b'{"ids": "x"}', 400, "invalid_args"),
]


@pytest.mark.parametrize("method, path, body, status, error", HTTP, ids=[f"{h[0]} {h[1]} {h[3]}" for h in HTTP])
def test_bad_http_request(cloud, capfd, method, path, body, status, error):
    host, port = cloud.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(
        method, path, body=body or None, headers={"Authorization": f"Bearer {cloud.api_key}", "Content-Type": "application/json"}
    )
    resp = conn.getresponse()
    data = json.loads(resp.read())
    assert resp.status == status and data.get("error") == error, (resp.status, data)
    conn.request("GET", "/api/v1/instances/", headers={"Authorization": f"Bearer {cloud.api_key}"})
    assert conn.getresponse().status == 200  # the connection (keep-alive) still serves
    conn.close()
    assert cloud.cloud.instances == {}
    assert "Traceback" not in capfd.readouterr().err


def test_a_body_over_the_limit_is_refused_before_it_is_read(cloud):
    host, port = cloud.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("PUT", "/api/v0/asks/1001/")
    conn.putheader("Authorization", f"Bearer {cloud.api_key}")
    conn.putheader("Content-Length", str(20_000_000))
    conn.endheaders()  # the body never comes: the answer must not wait for it
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"] == "request_too_large"
    conn.close()
    assert cloud.cloud.instances == {}


def test_unauthenticated_requests_get_a_json_auth_error(cloud):
    host, port = cloud.url.split("//")[1].split(":")
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 404)):  # Vast: a bad key is a 404
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/api/v0/instances/", headers=headers)
        resp = conn.getresponse()
        assert resp.status == status and json.loads(resp.read())["error"] == "auth_error"
        conn.close()


def test_serve_on_a_port_in_use_is_one_line(cloud, tmp_path):
    port = cloud.url.rsplit(":", 1)[1]
    p = run_cli(["local-cloud", "serve", "--port", port, "--root", str(tmp_path / "lc")], cwd=tmp_path, timeout=120)
    _one_line(p, 1, f"cannot listen on 127.0.0.1:{port}: Address already in use")
