"""Every config section, every key a user can get wrong, the environment, the ledger and the provider's
answers: each bad input gets one line naming the cause, a non-zero exit and nothing rented. In this process
(Click's runner), as there is no process tree to test here; test_bad_input_suite.py runs the CLI's own
process for the cases that need one.
"""

import http.server
import json
import os
import threading

import pytest
import yaml
from conftest import git, invoke, stage_config

from vast_launch.ledger import Ledger

GOOD = stage_config([{"name": "a", "command": "echo a"}], train={"profile": "smoke", "profiles": {"smoke": {}}})


def edited(**edits) -> dict:
    cfg = json.loads(json.dumps(GOOD))
    for dotted, value in edits.items():
        *path, last = dotted.split(".")
        node = cfg
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return cfg


def one_line(p, code, text, prefix="error: "):
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code, (p.returncode, p.stdout[-1500:], p.stderr[-1500:])
    assert "Traceback" not in p.stderr + p.stdout
    assert len(lines) == 1 and lines[0].startswith(prefix), p.stderr[-1500:]
    assert text in lines[0], lines[0]


def nothing_rented(tmp_path):
    home = tmp_path / "home"
    if (home / "ledger.sqlite").exists():
        with Ledger() as ledger:
            assert ledger.launches(since=None) == []
    cloud = home / "local" / "cloud"
    assert not cloud.exists() or not any(cloud.glob("instance-*"))


LONG = "x" * 2000
# (section, id, edits, what the one line says)
CONFIG_CASES = [
    # resources
    ("resources", "gpu-names-not-a-list", {"resources.gpu_names": "RTX_4090"}, "gpu_names: Input should be a valid list"),
    ("resources", "gpu-name-blank", {"resources.gpu_names": [" "]}, "GPU names must be non-empty text on one line"),
    ("resources", "gpu-name-newline", {"resources.gpu_names": ["RTX\n4090"]}, "GPU names must be non-empty text on one line"),
    ("resources", "num-gpus-zero", {"resources.num_gpus": 0}, "num_gpus: Input should be greater than or equal to 1"),
    ("resources", "num-gpus-17", {"resources.num_gpus": 17}, "num_gpus: Input should be less than or equal to 16"),
    ("resources", "num-gpus-text", {"resources.num_gpus": "two"}, "num_gpus: Input should be a valid integer"),
    ("resources", "num-gpus-fraction", {"resources.num_gpus": 1.5}, "num_gpus: Input should be a valid integer"),
    ("resources", "gpu-ram-negative", {"resources.min_gpu_ram_gb": -1}, "min_gpu_ram_gb: Input should be greater than or equal to 0"),
    ("resources", "gpu-ram-text", {"resources.min_gpu_ram_gb": "big"}, "min_gpu_ram_gb: Input should be a valid number"),
    ("resources", "disk-negative", {"resources.disk_gb": -5}, "disk_gb: Input should be greater than or equal to 8"),
    ("resources", "disk-text", {"resources.disk_gb": "lots"}, "disk_gb: Input should be a valid number"),
    ("resources", "max-dph-zero", {"resources.max_dph": 0}, "max_dph: Input should be greater than 0"),
    ("resources", "max-dph-negative", {"resources.max_dph": -1}, "max_dph: Input should be greater than 0"),
    ("resources", "reliability-negative", {"resources.min_reliability": -0.1}, "min_reliability: Input should be greater than"),
    ("resources", "reliability-text", {"resources.min_reliability": "high"}, "min_reliability: Input should be a valid number"),
    ("resources", "cuda-zero", {"resources.min_cuda": 0}, "min_cuda: Input should be greater than 0"),
    ("resources", "cuda-100", {"resources.min_cuda": 100}, "min_cuda: Input should be less than or equal to 99"),
    ("resources", "duration-negative", {"resources.min_duration_hours": -1}, "min_duration_hours: Input should be greater than"),
    ("resources", "interruptible-text", {"resources.interruptible": "perhaps"}, "interruptible: Input should be a valid boolean"),
    ("resources", "interruptible-no-bid", {"resources.interruptible": True}, "interruptible: true needs bid_price"),
    ("resources", "bid-zero", {"resources.bid_price": 0}, "bid_price: Input should be greater than or equal to 0.001"),
    ("resources", "bid-huge", {"resources.bid_price": 1000}, "bid_price: Input should be less than or equal to 128"),
    ("resources", "verified-text", {"resources.verified": "maybe"}, "verified: Input should be a valid boolean"),
    ("resources", "regions-not-a-list", {"resources.regions": "US"}, "regions: Input should be a valid list"),
    ("resources", "region-not-iso", {"resources.regions": ["usa"]}, "'usa' is not an ISO country code"),
    ("resources", "region-space", {"resources.regions": ["U S"]}, "is not an ISO country code"),
    ("resources", "image-too-long", {"resources.image": LONG}, "image: String should have at most 1024 characters"),
    ("resources", "unknown-key", {"resources.gpu_name": ["A100"]}, "unknown key 'resources.gpu_name'"),
    # lifecycle
    ("lifecycle", "auto-shutdown-text", {"lifecycle.auto_shutdown": "sometimes"}, "auto_shutdown: Input should be a valid boolean"),
    ("lifecycle", "max-hours-zero", {"lifecycle.max_hours": 0}, "max_hours: Input should be greater than or equal to"),
    ("lifecycle", "max-hours-negative", {"lifecycle.max_hours": -1}, "max_hours: Input should be greater than or equal to"),
    ("lifecycle", "max-hours-a-year", {"lifecycle.max_hours": 10_000}, "max_hours: Input should be less than or equal to 336"),
    ("lifecycle", "idle-zero", {"lifecycle.idle_minutes": 0}, "idle_minutes: Input should be greater than 0"),
    ("lifecycle", "idle-negative", {"lifecycle.idle_minutes": -3}, "idle_minutes: Input should be greater than 0"),
    ("lifecycle", "budget-zero", {"lifecycle.max_cost_usd": 0}, "max_cost_usd: Input should be greater than 0"),
    ("lifecycle", "budget-text", {"lifecycle.max_cost_usd": "free"}, "max_cost_usd: Input should be a valid number"),
    ("lifecycle", "budget-bool", {"lifecycle.max_cost_usd": True}, "max_cost_usd: a number is expected, not true/false"),
    ("lifecycle", "loading-zero", {"lifecycle.loading_timeout_minutes": 0}, "loading_timeout_minutes: Input should be greater than 0"),
    ("lifecycle", "grace-negative", {"lifecycle.reap_grace_minutes": -1}, "reap_grace_minutes: Input should be greater than or equal"),
    ("lifecycle", "unknown-key", {"lifecycle.max_hour": 2}, "unknown key 'lifecycle.max_hour'"),
    # code
    ("code", "repo-blank", {"code.repo": " "}, "code.repo: must be non-empty text on one line"),
    ("code", "repo-newline", {"code.repo": "https://h/r.git\nrm -rf /"}, "code.repo: must be non-empty text on one line"),
    ("code", "remote-newline", {"code.remote": "origin\nx"}, "code.remote: must be non-empty text on one line"),
    ("code", "setup-a-number", {"code.setup": 42}, "code.setup: Input should be a valid string"),
    ("code", "archive-without-sha", {"code.archive_url": "https://git.example/r.tar.gz"}, "archive_url: must contain {sha}"),
    ("code", "archive-ftp", {"code.archive_url": "ftp://git.example/{sha}.tar.gz"}, "archive_url: expected an http(s) URL"),
    ("code", "archive-too-long", {"code.archive_url": "https://h/{sha}" + LONG}, "archive_url: String should have at most 1024"),
    ("code", "unknown-key", {"code.branch": "main"}, "unknown key 'code.branch'"),
    # wandb
    ("wandb", "project-empty", {"wandb.project": ""}, "wandb.project: String should have at least 1 character"),
    ("wandb", "project-newline", {"wandb.project": "p\nq"}, "wandb.project: must be on one line"),
    ("wandb", "entity-newline", {"wandb.entity": "team\n"}, "wandb.entity: must be on one line"),
    ("wandb", "group-newline", {"wandb.group": "g\r"}, "wandb.group: must be on one line"),
    ("wandb", "mode-bool", {"wandb.mode": True}, "wandb.mode: Input should be 'online', 'offline' or 'disabled'"),
    ("wandb", "unknown-key", {"wandb.team": "x"}, "unknown key 'wandb.team'"),
    # stages
    ("stages", "not-a-list", {"stages": {"a": "echo"}}, "stages: Input should be a valid list"),
    (
        "stages",
        "command-newline",
        {"stages": [{"name": "a", "command": "echo a\necho b"}]},
        "stages.0.command: must be one non-empty line",
    ),
    ("stages", "command-tab", {"stages": [{"name": "a", "command": "echo\ta"}]}, "stages.0.command: must be one non-empty line"),
    ("stages", "command-empty", {"stages": [{"name": "a", "command": " "}]}, "stages.0.command: must be one non-empty line"),
    ("stages", "command-nul", {"stages": [{"name": "a", "command": "echo \x00"}]}, "stages.0.command"),
    ("stages", "name-slash", {"stages": [{"name": "a/b"}]}, "stage names are letters"),
    ("stages", "name-empty", {"stages": [{"name": ""}]}, "stage names are letters"),
    ("stages", "unknown-key", {"stages": [{"name": "a", "cmd": "x"}]}, "unknown key 'stages.0.cmd'"),
    ("stages", "name-missing", {"stages": [{"command": "x"}]}, "missing required key 'stages.0.name'"),
    # train
    ("train", "profiles-a-list", {"train.profiles": ["smoke"]}, "train.profiles: Input should be a valid dictionary"),
    ("train", "profile-a-number", {"train.profile": 3}, "train.profile: Input should be a valid string"),
    ("train", "schema-too-long", {"train.profile_schema": LONG}, "profile_schema: String should have at most 1024 characters"),
    ("train", "unknown-key", {"train.profil": "smoke"}, "unknown key 'train.profil'"),
    # slurm
    ("slurm", "partition-newline", {"slurm.partition": "gpu\n#SBATCH --uid=0"}, "expected a partition name"),
    ("slurm", "partition-space", {"slurm.partition": "gpu large"}, "expected a partition name"),
    ("slurm", "partition-semicolon", {"slurm.partition": "gpu;id"}, "expected a partition name"),
    ("slurm", "pipeline-name-slash", {"slurm.pipelines": {"../p": {"a": {}}}}, "pipeline name '../p'"),
    ("slurm", "cpus-zero", {"slurm.pipelines": {"p": {"a": {"cpus": 0}}}}, "cpus: Input should be greater than or equal to 1"),
    ("slurm", "gpus-negative", {"slurm.pipelines": {"p": {"a": {"gpus": -1}}}}, "gpus: Input should be greater than or equal to 0"),
    ("slurm", "cpus-text", {"slurm.pipelines": {"p": {"a": {"cpus": "many"}}}}, "cpus: Input should be a valid integer"),
    ("slurm", "walltime-newline", {"slurm.pipelines": {"p": {"a": {"walltime": "01:00:00\n#SBATCH --uid=0"}}}}, "expected HH:MM:SS"),
    ("slurm", "memory-newline", {"slurm.pipelines": {"p": {"a": {"memory": "8G\n#SBATCH"}}}}, "expected a size like 8G"),
    ("slurm", "stage-unknown-key", {"slurm.pipelines": {"p": {"a": {"ram": "8G"}}}}, "unknown key 'slurm.pipelines.p.a.ram'"),
    ("slurm", "unknown-key", {"slurm.queue": "gpu"}, "unknown key 'slurm.queue'"),
    # outputs
    ("outputs", "url-http", {"outputs.url": "http://example.com/x"}, "expected s3://bucket/prefix or file:///path"),
    ("outputs", "url-no-bucket", {"outputs.url": "s3://"}, "expected s3://bucket/prefix with a bucket name"),
    ("outputs", "url-bad-bucket", {"outputs.url": "s3://My_Bucket/x"}, "expected s3://bucket/prefix with a bucket name"),
    ("outputs", "url-relative-file", {"outputs.url": "file://relative/x"}, "expected file:///absolute/path"),
    ("outputs", "url-dollar", {"outputs.url": "s3://bucket/$(id)"}, "are not accepted in a store URL"),
    ("outputs", "url-quote", {"outputs.url": "s3://bucket/it's"}, "are not accepted in a store URL"),
    ("outputs", "url-newline", {"outputs.url": "s3://bucket/a\nb"}, "are not accepted in a store URL"),
    ("outputs", "endpoint-ftp", {"outputs.endpoint_url": "ftp://minio:9000"}, "endpoint_url: expected http(s)://host[:port]"),
    ("outputs", "endpoint-no-host", {"outputs.endpoint_url": "http://"}, "endpoint_url: expected http(s)://host[:port]"),
    ("outputs", "sync-negative", {"outputs.sync_every_minutes": -1}, "sync_every_minutes: Input should be greater than or equal to 0"),
    (
        "outputs",
        "final-sync-zero",
        {"outputs.final_sync_timeout_s": 0},
        "final_sync_timeout_s: Input should be greater than or equal to 5",
    ),
    (
        "outputs",
        "final-sync-a-day",
        {"outputs.final_sync_timeout_s": 86400},
        "final_sync_timeout_s: Input should be less than or equal",
    ),
    ("outputs", "unknown-key", {"outputs.bucket": "b"}, "unknown key 'outputs.bucket'"),
    # the top level
    ("top", "name-empty", {"name": ""}, "name: String should have at least 1 character"),
    ("top", "name-a-number", {"name": 42}, "name: Input should be a valid string"),
    ("top", "unknown-key", {"stagez": []}, "unknown key 'stagez'"),
]

RAW_CASES = [
    ("yaml", "duplicate-top-key", "name: a\nstages: [a]\nname: b\n", "duplicate key 'name' at lines 1 and 3"),
    (
        "yaml",
        "duplicate-nested-key",
        "name: a\nlifecycle:\n  max_hours: 1\n  max_hours: 300\nstages: [a]\n",
        "duplicate key 'max_hours' at lines",
    ),
    ("yaml", "duplicate-in-a-stage", "name: a\nstages:\n  - {name: x, name: y}\n", "duplicate key 'name'"),
    ("yaml", "tab-indent", "name: a\n\tstages: [a]\n", "malformed YAML"),
    ("yaml", "binary", "\x00\x01\x02", "malformed YAML"),
    ("yaml", "a-string", "just words\n", "the top level must be a mapping"),
    ("yaml", "a-number", "42\n", "the top level must be a mapping"),
    ("yaml", "null-stages", "name: a\nstages:\n", "stages: Input should be a valid list"),
]


@pytest.mark.parametrize(
    "section, case, edits, expected", CONFIG_CASES + RAW_CASES, ids=[f"{c[0]}-{c[1]}" for c in CONFIG_CASES + RAW_CASES]
)
def test_a_bad_config_value_is_one_line_naming_its_key(tmp_path, section, case, edits, expected):
    path = tmp_path / "c.yaml"
    path.write_text(edits if isinstance(edits, str) else yaml.safe_dump(edited(**edits)))
    for argv in (["--local", "--auto-shutdown", "--config", str(path)], ["check", "--config", str(path)]):
        p = invoke(argv, tmp_path)
        one_line(p, 1, expected, prefix="error: " if argv[0] != "check" else "check failed: ")
    nothing_rented(tmp_path)


# --- profile schemas that could hang or read forever: refused before anything is read ------------------------
def _fifo(repo):
    os.mkfifo(repo / "schema.json")
    return "schema.json"


SCHEMAS = [
    ("absolute", lambda repo: "/etc/passwd", "must be a path inside the repository"),
    ("outside", lambda repo: "../outside.json", "must be a path inside the repository"),
    ("device", lambda repo: "/dev/zero", "must be a path inside the repository"),
    ("fifo", _fifo, "not a regular file"),
    ("directory", lambda repo: "configs", "not a regular file"),
    ("missing", lambda repo: "nope.json", "no such file in the repository"),
    ("huge", lambda repo: (repo / "big.json").write_text(" " * 1_100_000) and "big.json", "is not a schema (at most 1000000)"),
    ("not-json", lambda repo: (repo / "s.json").write_text("{nope") and "s.json", "not JSON"),
    ("not-utf8", lambda repo: (repo / "s.json").write_bytes(b"\xff\xfe{}") and "s.json", "not UTF-8 text"),
    ("not-a-schema", lambda repo: (repo / "s.json").write_text('{"type": 42}') and "s.json", "not a JSON Schema"),
]


@pytest.mark.parametrize("case, make, expected", SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_a_profile_schema_must_be_a_small_regular_file_in_the_repository(repo_factory, tmp_path, case, make, expected):
    repo = repo_factory(GOOD)
    rel = make(repo)
    cfg = yaml.safe_load((repo / "configs" / "test.yaml").read_text())
    cfg["train"]["profile_schema"] = rel
    (repo / "configs" / "test.yaml").write_text(yaml.safe_dump(cfg))
    (repo / ".git" / "info" / "exclude").write_text("schema.json\nbig.json\ns.json\n")
    git(repo, "add", "configs/test.yaml")
    git(repo, "commit", "-qm", "schema")
    git(repo, "push", "-q")
    p = invoke(["check", "--config", "configs/test.yaml", "--local"], repo)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("check failed: train.profile_schema"), p.stderr
    assert expected in lines[0], lines[0]


# --- flags and ids, in this process -----------------------------------------------------------------------------
FLAGS = [
    (["--local", "--env", "A=x\ny"], 1, "--env A: the value must be one line"),
    (["--local", "--env", "=x"], 1, "--env : expected KEY=VALUE"),
    (["--local", "--resume", "nosuch-20261124-080000-ab12"], 1, "--resume nosuch-20261124-080000-ab12: no launch matches"),
    (["pull", "nosuch"], 1, "no launch matches 'nosuch'"),
    (["status", "²"], 1, "no launch matches '²'"),
    (["logs", "²"], 1, "no launch matches '²'"),
    (["local-cloud", "serve", "--port", "99999"], 2, "Invalid value for '--port'"),
    (["local-cloud", "serve", "--port", "-1"], 2, "Invalid value for '--port'"),
    (["reap", "--stuck-minutes", "0"], 2, "Invalid value for '--stuck-minutes'"),
    (["cost", "--until", "yesterday-ish"], 1, "--until"),
    (["--local", "--heartbeat-seconds", "abc"], 2, "Invalid value for '--heartbeat-seconds'"),
    (["--local", "--target", "slurm", "--walltime", "soon"], 1, "--local and --target slurm: choose one"),
    (["--target", "slurm", "--walltime", "soon"], 1, "--walltime"),
    (["--target", "slurm", "--partition", "a b"], 1, "--partition"),
    (["--local", "--walltime", "01:00:00"], 1, "--walltime: only with --target slurm"),
    (["--price", "1"], 1, "--price: only with --local"),
]


@pytest.mark.parametrize("argv, code, expected", FLAGS, ids=[" ".join(f[0])[:40] for f in FLAGS])
def test_a_bad_flag_is_one_line(repo_factory, tmp_path, argv, code, expected):
    repo = repo_factory(GOOD)
    if argv[0].startswith("--") and "--config" not in argv:
        argv = ["--config", "configs/test.yaml", *argv]
    one_line(invoke(argv, repo), code, expected)
    nothing_rented(tmp_path)


# --- the environment and the provider's answers ------------------------------------------------------------------
@pytest.fixture
def web_page():
    """A server that answers every request with a web page, as a wrong VAST_URL would."""

    class Page(http.server.BaseHTTPRequestHandler):
        def _page(self):
            body = b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"
            self.send_response(200 if self.command == "GET" else 405)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _page

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


ENVIRONMENTS = [
    ("url-garbage", {"VAST_URL": "ht!tp://::", "VAST_API_KEY": "k"}, "VAST_URL 'ht!tp://::': expected http(s)://host[:port]"),
    ("url-no-scheme", {"VAST_URL": "console.vast.ai", "VAST_API_KEY": "k"}, "VAST_URL 'console.vast.ai': expected http(s)"),
    ("url-space", {"VAST_URL": "https://console .vast.ai", "VAST_API_KEY": "k"}, "expected http(s)://host[:port]"),
    ("key-newline", {"VAST_URL": "http://127.0.0.1:9", "VAST_API_KEY": "abc\ndef"}, "holds a space, newline or control character"),
    ("key-space", {"VAST_URL": "http://127.0.0.1:9", "VAST_API_KEY": "abc def"}, "holds a space, newline or control character"),
    ("key-blank", {"VAST_URL": "http://127.0.0.1:9", "VAST_API_KEY": "   "}, "no Vast API key"),
    ("unreachable", {"VAST_URL": "http://127.0.0.1:9", "VAST_API_KEY": "k"}, "cannot reach http://127.0.0.1:9: connection refused"),
]


@pytest.mark.parametrize("case, env, expected", ENVIRONMENTS, ids=[e[0] for e in ENVIRONMENTS])
def test_a_bad_provider_setting_is_one_line_naming_it(repo_factory, case, env, expected):
    repo = repo_factory(GOOD)
    one_line(invoke(["offers", "--config", "configs/test.yaml"], repo, env=env), 1, expected)


@pytest.mark.parametrize("command", [["offers"], ["reap", "--dry-run"], ["--yes"]])
def test_a_web_page_instead_of_the_api_is_named(repo_factory, web_page, command):
    repo = repo_factory(GOOD)
    argv = [*command[:1], "--config", "configs/test.yaml", *command[1:]] if command[0] == "offers" else command
    if command == ["--yes"]:
        argv = ["--config", "configs/test.yaml", "--yes"]
    p = invoke(argv, repo, env={"VAST_URL": web_page, "VAST_API_KEY": "k"})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert any(f"{web_page} answered" in line and "not the Vast API" in line and "check VAST_URL" in line for line in lines), p.stderr


def test_a_damaged_ledger_is_named_with_what_to_do(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    for argv in (["status"], ["cost"], ["down", "--all", "--yes"]):
        p = invoke(argv, tmp_path)
        one_line(p, 1, f"ledger {home / 'ledger.sqlite'} is damaged")
        assert f"mv {home / 'ledger.sqlite'} {home / 'ledger.sqlite'}.damaged" in p.stderr


def test_reading_commands_create_nothing_where_home_points_nowhere(tmp_path, monkeypatch):
    monkeypatch.delenv("VAST_LAUNCH_HOME")
    nowhere = tmp_path / "no" / "such" / "home"
    for argv in (["status"], ["status", "--json"], ["cost"], ["logs", "x"], ["pull", "x"], ["report", "x"]):
        p = invoke(argv, tmp_path, env={"HOME": str(nowhere), "XDG_STATE_HOME": ""})
        assert p.returncode in (0, 1) and "Traceback" not in p.stderr, (argv, p.stderr)
    assert not (tmp_path / "no").exists()


def test_a_remote_on_this_machine_is_refused_for_vast(repo_factory, tmp_path):
    repo = repo_factory(GOOD)
    p = invoke(["check", "--config", "configs/test.yaml"], repo, env={"VAST_API_KEY": "k", "VAST_URL": "https://console.vast.ai"})
    assert p.returncode == 1 and "is a path on this machine: an instance on Vast cannot clone it" in p.stderr, p.stderr
    # the local cloud on this machine reaches it
    p = invoke(["check", "--config", "configs/test.yaml"], repo, env={"VAST_API_KEY": "k", "VAST_URL": "http://127.0.0.1:9"})
    assert "is a path on this machine" not in p.stderr, p.stderr
