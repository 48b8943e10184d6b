"""Pre-launch git checks: the instance clones from the remote, so HEAD must be there."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from .errors import UserError


def git(args: list[str], cwd: str | Path, check: bool = True, timeout: float = 60, strip: bool = True) -> str:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, ["git", *args], p.stdout, p.stderr)
    return p.stdout.strip() if strip else p.stdout


@dataclass
class GitState:
    root: Path
    commit: str
    branch: Optional[str]
    remote: str
    remote_url: Optional[str]
    dirty: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)  # among dirty: files git does not track (`??`)
    on_remote: Optional[bool] = None
    remote_error: Optional[str] = None
    remote_had_credentials: bool = False


def repo_root(path: str | Path = ".") -> Path:
    try:
        return Path(git(["rev-parse", "--show-toplevel"], cwd=path))
    except (subprocess.CalledProcessError, FileNotFoundError, NotADirectoryError):
        raise UserError(f"{Path(path).resolve()}: not inside a git repository (the instance clones your commit)")


def git_cause(stderr: Optional[str]) -> str:
    """git's first `fatal:`/`error:` line: its last line is often advice ("and the repository exists.")."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[-1] if lines else None)
    return first or "git ls-remote failed"


def remote_timeout() -> float:
    """Seconds `git ls-remote` may take: $VAST_LAUNCH_GIT_TIMEOUT, default 60 (a slow forge over a VPN)."""
    try:
        value = float(os.environ.get("VAST_LAUNCH_GIT_TIMEOUT") or 60)
    except ValueError:
        raise UserError(f"VAST_LAUNCH_GIT_TIMEOUT={os.environ['VAST_LAUNCH_GIT_TIMEOUT']!r}: expected seconds")
    if not 0 < value <= 3600:
        raise UserError(f"VAST_LAUNCH_GIT_TIMEOUT={value:g}: expected more than 0 and at most 3600 seconds")
    return value


def commit_on_remote(root: Path, remote: str, sha: str) -> tuple[bool, Optional[str]]:
    """Ask the remote itself whether `sha` is reachable from one of its refs."""
    limit = remote_timeout()
    try:
        listing = git(["ls-remote", remote], cwd=root, timeout=limit)
    except subprocess.CalledProcessError as exc:
        return False, git_cause(exc.stderr)
    except subprocess.TimeoutExpired:
        return False, f"the remote did not answer within {limit:g} s (VAST_LAUNCH_GIT_TIMEOUT)"
    remote_shas = {line.split()[0] for line in listing.splitlines() if line.strip()}
    if sha in remote_shas:
        return True, None
    missing = [
        s
        for s in remote_shas
        if subprocess.run(["git", "cat-file", "-e", f"{s}^{{commit}}"], cwd=root, capture_output=True).returncode != 0
    ]
    if missing:  # the remote has commits we do not: fetch them (refs only under our remote namespace)
        subprocess.run(["git", "fetch", "-q", remote], cwd=root, capture_output=True, timeout=120)
    for s in remote_shas:
        if subprocess.run(["git", "merge-base", "--is-ancestor", sha, s], cwd=root, capture_output=True).returncode == 0:
            return True, None
    return False, None


def public_url(url: str) -> tuple[str, bool]:
    """The remote URL without credentials (`https://user:token@host/r.git` -> `https://host/r.git`), and
    whether it held any. What is shown, stored, rendered or sent is only ever this form; an ssh user
    name (`ssh://git@host/...`, `git@host:...`) is no credential and stays."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url, False
    userinfo, host = parts.netloc.rsplit("@", 1)
    if parts.scheme == "ssh":
        if ":" not in userinfo:
            return url, False
        host = userinfo.split(":", 1)[0] + "@" + host
    return urlunsplit(parts._replace(netloc=host)), True


GITHUB_REMOTE = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|ssh://git@github\.com/|git@github\.com:)"
    r"(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?$"
)


def archive_url(repo_url: str, commit: str, template: str | None = None) -> str:
    """Where an instance without git downloads the commit as a tarball: `template` (code.archive_url,
    `{sha}` filled in), else GitHub's API tarball for a GitHub remote (it serves private repos with a
    token), else nothing."""
    if template is not None:
        return template.replace("{sha}", commit)
    m = GITHUB_REMOTE.match(repo_url)
    return f"https://api.github.com/repos/{m['owner']}/{m['repo']}/tarball/{commit}" if m else ""


SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:(?!//)[^\\]")


def cloneable_from_anywhere(url: str) -> bool:
    """A remote an instance on the internet can fetch: an http(s), ssh or git URL, or scp-like
    `git@host:owner/repo.git`; not a path or a file:// URL on this machine."""
    return urlsplit(url).scheme in ("https", "http", "ssh", "git") or bool(SCP_LIKE.match(url) and not url.startswith(("/", ".")))


def inspect(path: str | Path = ".", remote: str = "origin", ask_remote: bool = True) -> GitState:
    root = repo_root(path)
    try:
        commit = git(["rev-parse", "HEAD"], cwd=root)
    except subprocess.CalledProcessError:
        raise UserError(f"{root}: the repository has no commit yet")
    branch = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=root, check=False) or None
    url = git(["remote", "get-url", remote], cwd=root, check=False) or None
    url, with_credentials = public_url(url) if url else (None, False)
    # porcelain lines are "XY path" and X is often a space: never strip them
    porcelain = [line for line in git(["status", "--porcelain"], cwd=root, strip=False).splitlines() if line.strip()]
    dirty = [line[3:] for line in porcelain]
    state = GitState(
        root=root, commit=commit, branch=branch, remote=remote, remote_url=url, dirty=dirty, remote_had_credentials=with_credentials
    )
    state.untracked = [line[3:] for line in porcelain if line.startswith("??")]
    if ask_remote and url:
        state.on_remote, state.remote_error = commit_on_remote(root, remote, commit)
        if with_credentials and state.remote_error:
            state.remote_error = "git could not read the remote (its message is not shown: the URL holds credentials)"
    return state


def tracked_in_head(root: Path, path: Path) -> bool:
    try:
        rel = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return subprocess.run(["git", "cat-file", "-e", f"HEAD:{rel.as_posix()}"], cwd=root, capture_output=True).returncode == 0
