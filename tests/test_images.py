"""Images as on Vast: a slim image has no git (the pytorch runtime images among them), and the
bootstrap still runs exactly the pushed commit; the git token never lands on disk or on argv."""

import base64
import http.server
import subprocess
import sys
import threading

import pytest
import yaml
from conftest import cloud_env, git, no_live_processes, run_cli, stage_config

from vast_launch.gitcheck import archive_url

TOKEN = "ghp_test-token-7c2e"


def launch(repo, lc, env=None):
    args = ["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"]
    return run_cli(args, cwd=repo, env={**cloud_env(lc), **(env or {})})


def only_instance(lc):
    (inst,) = lc.cloud.instances.values()
    return inst


class ArchiveServer:
    """A forge's tarball endpoint in front of a real bare repository (`git archive`). Like GitHub's API,
    it wants the token, then redirects to a download host that must not receive it."""

    def __init__(self, bare):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/api/"):
                    if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        return self._answer(404, b"not found")
                    self.send_response(302)
                    self.send_header("Location", "/download/" + self.path.rsplit("/", 1)[1])
                    self.end_headers()
                    return
                sha = self.path.rsplit("/", 1)[1]
                if self.headers.get("Authorization"):
                    return self._answer(400, b"the token reached the download host")
                data = subprocess.run(
                    ["git", "archive", "--format=tar.gz", f"--prefix=owner-proj-{sha[:7]}/", sha],
                    cwd=bare,
                    capture_output=True,
                    check=True,
                ).stdout
                self._answer(200, data)

            def _answer(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def forge(request):
    servers = []

    def start(bare):
        servers.append(ArchiveServer(bare))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def committed_marker(repo):
    (repo / "marker.txt").write_text("from-the-pushed-commit\n")
    git(repo, "add", "marker.txt")
    git(repo, "commit", "-q", "-m", "marker")
    git(repo, "push", "-q")
    return git(repo, "rev-parse", "HEAD").strip()


def test_image_without_git_runs_the_pushed_commit_from_its_archive(repo_factory, cloud, forge):
    repo = repo_factory(stage_config([{"name": "a", "command": "command -v git || echo no-git-here; cat marker.txt"}]))
    server = forge(repo.parent / (repo.name + "-remote.git"))
    cfg = repo / "configs" / "test.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["code"]["archive_url"] = server.url + "/api/repos/owner/proj/tarball/{sha}"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    git(repo, "commit", "-q", "-am", "archive url")
    sha = committed_marker(repo)
    cloud.cloud.faults.update({"no_git": True})

    p = launch(repo, cloud, {"VAST_LAUNCH_GIT_TOKEN": TOKEN})

    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    assert "no-git-here" in p.stdout and "from-the-pushed-commit" in p.stdout
    assert "no git in the image: fetching the commit's archive" in p.stdout
    assert server.requests == [(f"/api/repos/owner/proj/tarball/{sha}", f"Bearer {TOKEN}"), (f"/download/{sha}", None)]
    inst = only_instance(cloud)
    assert inst.destroyed_by == "instance"
    assert (next(inst.workdir.glob("vl-*")) / "repo" / ".vl-commit").read_text().strip() == sha
    assert no_live_processes(cloud)


def test_image_without_git_and_no_way_to_get_it_fails_in_setup_and_is_destroyed(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "echo never-ran"}]))
    cloud.cloud.faults.update({"no_git": True})

    p = launch(repo, cloud)

    assert p.returncode != 0
    assert "no git in the image and it could not be installed" in p.stdout
    assert "never-ran" not in p.stdout.replace("echo never-ran", "")
    assert only_instance(cloud).destroyed_by == "instance"
    assert no_live_processes(cloud)


def test_git_token_is_never_written_into_the_clone(repo_factory, cloud):
    repo = repo_factory(stage_config([{"name": "a", "command": "git config --list --show-origin"}]))

    p = launch(repo, cloud, {"VAST_LAUNCH_GIT_TOKEN": TOKEN})

    assert p.returncode == 0, p.stderr
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    clone = next(only_instance(cloud).workdir.glob("vl-*")) / "repo" / ".git"
    for path in clone.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert TOKEN.encode() not in text and encoded.encode() not in text, path
    assert "extraheader" not in p.stdout.lower()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://github.com/o/r.git", "https://api.github.com/repos/o/r/tarball/abc"),
        ("https://github.com/o/r", "https://api.github.com/repos/o/r/tarball/abc"),
        ("git@github.com:o/my.repo.git", "https://api.github.com/repos/o/my.repo/tarball/abc"),
        ("ssh://git@github.com/o/r.git", "https://api.github.com/repos/o/r/tarball/abc"),
        ("https://gitlab.com/o/r.git", ""),
        ("/srv/git/r.git", ""),
    ],
)
def test_archive_url_is_derived_for_github_remotes_only(url, expected):
    assert archive_url(url, "abc") == expected


def test_archive_url_template_wins():
    assert (
        archive_url("https://github.com/o/r.git", "abc", "https://git.example/r/-/archive/{sha}.tar.gz")
        == "https://git.example/r/-/archive/abc.tar.gz"
    )


def test_local_launch_does_not_send_the_git_token(repo_factory):
    repo = repo_factory(stage_config([{"name": "a", "command": 'echo "token=${VL_GIT_TOKEN:-none}"'}]))
    p = run_cli(["--local", "--config", "configs/test.yaml"], cwd=repo, env={"VAST_LAUNCH_GIT_TOKEN": TOKEN})
    assert p.returncode == 0, p.stdout[-2000:]
    assert "token=none" in p.stdout and TOKEN not in p.stdout


MINI_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "vl-mini-package"
version = "0.1"

[tool.setuptools]
packages = ["vl_mini"]
"""


def test_local_runs_the_real_setup_into_the_instance_python_never_the_users(repo_factory):
    """--local runs `code.setup` as Vast would: into the image's Python (a virtualenv in the instance's own
    files that sees this host's packages, as a PyTorch image has torch), never into the launcher's env."""
    use = 'python3 -c \'import os, vl_mini, torch; print("vl_mini", vl_mini.X, os.environ["OMP_NUM_THREADS"], vl_mini.__file__)\''
    setup = "pip install -q --no-build-isolation --no-deps ./mini"
    repo = repo_factory(stage_config([{"name": "use", "command": use}], code={"setup": setup}))
    (repo / "mini" / "vl_mini").mkdir(parents=True)
    (repo / "mini" / "pyproject.toml").write_text(MINI_PYPROJECT)
    (repo / "mini" / "vl_mini" / "__init__.py").write_text("X = 42\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a package the setup installs")
    git(repo, "push", "-q")
    # this machine's thread cap reaches the instances, which share its cores
    p = run_cli(["--local", "--auto-shutdown", "--config", "configs/test.yaml"], cwd=repo, env={"OMP_NUM_THREADS": "3"}, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    (line,) = [ln for ln in p.stdout.splitlines() if "vl_mini 42 " in ln]
    assert "vl_mini 42 3 " in line and "/.image-python/lib/" in line, line  # installed inside the instance
    mine = subprocess.run([sys.executable, "-c", "import vl_mini"], capture_output=True, text=True)
    assert mine.returncode != 0 and "No module named 'vl_mini'" in mine.stderr  # not into the launcher's env
    assert git(repo, "status", "--porcelain") == ""

    # a setup that fails is reported as such, locally as on Vast
    cfg = yaml.safe_load((repo / "configs" / "test.yaml").read_text())
    cfg["code"]["setup"] = "pip install -q --no-index vl-no-such-package"
    (repo / "configs" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    git(repo, "commit", "-q", "-am", "a setup that fails")
    git(repo, "push", "-q")
    p = run_cli(["--local", "--auto-shutdown", "--config", "configs/test.yaml"], cwd=repo, timeout=1500)
    assert p.returncode != 0 and "failed in stage setup" in p.stdout + p.stderr, p.stdout[-3000:] + p.stderr[-2000:]


def test_a_slim_python_image_has_only_what_the_setup_installs(repo_factory, cloud, tmp_path):
    """An image whose Python lacks the project's dependencies (the `bare_python` fault: pip alone): the
    stages see what `code.setup` installed into it, and nothing of this host's."""
    check = "import importlib.util as u, vl_mini; print('vl_mini', vl_mini.X, [u.find_spec(m) is None for m in ('yaml', 'torch')])"
    setup = "pip install -q --no-index wheels/*.whl"
    repo = repo_factory(stage_config([{"name": "use", "command": f'python3 -c "{check}"'}], code={"setup": setup}))
    (tmp_path / "mini" / "vl_mini").mkdir(parents=True)
    (tmp_path / "mini" / "pyproject.toml").write_text(MINI_PYPROJECT)
    (tmp_path / "mini" / "vl_mini" / "__init__.py").write_text("X = 42\n")
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", repo / "wheels", tmp_path / "mini"]
    subprocess.run(wheel, check=True, capture_output=True, timeout=600)  # a slim image has no setuptools to build with
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a wheel the setup installs")
    git(repo, "push", "-q")
    cloud.cloud.faults.update({"bare_python": True})

    p = launch(repo, cloud)

    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "vl_mini 42 [True, True]" in p.stdout, p.stdout[-3000:]  # installed; this host's yaml and torch unseen
    assert only_instance(cloud).destroyed_by == "instance"
    assert no_live_processes(cloud)
