"""`vast-launch init`: a commented starter config for the repository at hand, valid as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from . import gitcheck
from .checks import wandb_key_present
from .config import parse_config
from .errors import UserError
from .state_dir import user_file_mode

ENTRY_POINTS = ("train.py", "main.py", "scripts/train.py", "src/train.py")


def _name(root: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:40]
    return slug or "train"


def _setup(root: Path) -> tuple[str, str]:
    """(setup command, why) from what the repo has."""
    if (root / "pyproject.toml").is_file() or (root / "setup.py").is_file():
        return "pip install -q -e .", "the repo is a Python package"
    if (root / "requirements.txt").is_file():
        return "pip install -q -r requirements.txt", "the repo has requirements.txt"
    return "true", "nothing to install was found; put your install command here"


def _stage_command(root: Path) -> tuple[str, str]:
    for rel in ENTRY_POINTS:
        if (root / rel).is_file():
            return f"python3 {rel}", f"found {rel}"
    return "python3 train.py", "no train.py found: change this to your training command"


def starter_config(cwd: Path, config_path: str = "vast-launch.yaml") -> str:
    root = gitcheck.repo_root(cwd)
    url = gitcheck.git(["remote", "get-url", "origin"], cwd=root, check=False) or None
    name = _name(root)
    setup, setup_why = _setup(root)
    command, command_why = _stage_command(root)
    remote = gitcheck.public_url(url)[0] if url else None
    mode = "online" if wandb_key_present() else "offline"
    q = lambda v: yaml.safe_dump(v, default_style=None, width=10_000).strip().removesuffix("\n...")  # noqa: E731
    wandb_why = (
        "a W&B key is set"
        if mode == "online"
        else "no W&B key found: offline runs go with the instance; set WANDB_API_KEY and use online"
    )
    text = f"""\
# vast-launch config for {root.name}. Every key: `vast-launch config-schema --markdown`.
# Try it on this machine first:  vast-launch --local --auto-shutdown --config {config_path}
# prefix of launch ids and instance labels
name: {q(name)}

resources:                          # what to rent: the cheapest offer that fits wins
  gpu_names: [RTX_4090, RTX_3090]   # acceptable GPU models; [] for any
  num_gpus: 1
  max_dph: 1.0                      # $/hour at most, all-in
  min_reliability: 0.95
  disk_gb: 30
  image: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

lifecycle:                          # the instance always ends; these say when at the latest
  auto_shutdown: true               # destroy it when the stages end, also on failure
  max_hours: 4                      # hard deadline, enforced on the instance itself
  idle_minutes: 30                  # destroy after 30 min with no stage process and no GPU use

code:
  # the instance fetches the pushed commit from {remote or "the remote 'origin'"}, then runs this once
  # ({setup_why})
  setup: {q(setup)}

wandb:
  project: {q(name)}
  # {wandb_why}
  mode: {mode}

outputs:                            # what outlives the instance: $VL_OUT, the log, result.json (`vast-launch pull ID`)
  # url: s3://my-bucket/{name}       # any S3-compatible store; keys from AWS_* in your environment
  # endpoint_url: https://<account-id>.r2.cloudflarestorage.com   # R2, B2, MinIO...; none for AWS
  sync_every_minutes: 10            # --local keeps them in a folder of the state dir without any of this

stages:                             # in order; a failing stage ends the run
  - name: train
    # {command_why}; $VL_OUT is a directory for outputs
    command: {q(command)}
"""
    parse_config(yaml.safe_load(text), "the starter config")  # what init writes must load as written
    return text


# Folders a training run leaves in the working tree; untracked, they would fail every launch's clean-tree check.
OUTPUT_DIRS = ("out", "outputs", "runs", "checkpoints", "ckpt", "wandb", "lightning_logs", "results", "logs")


def ignore_outputs(root: Path) -> list[str]:
    """Append the untracked output folders at the repository's top to its .gitignore; returns them."""
    listing = gitcheck.git(["ls-files", "--others", "--directory", "--exclude-standard"], cwd=root, check=False)
    found = [f"/{d}" for d in listing.splitlines() if d.endswith("/") and d.count("/") == 1 and d[:-1] in OUTPUT_DIRS]
    if found:
        path = root / ".gitignore"
        before = path.read_text() if path.exists() else ""
        lines = ([""] if before and not before.endswith("\n") else []) + ["# outputs of local runs (vast-launch init)", *found]
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, user_file_mode())
    return found


def write_starter(cwd: Path, out: Path, force: bool) -> Path:
    if out.exists() and not force:
        raise UserError(f"{out} exists: pass --force to overwrite it, or --out another path")
    try:
        text = starter_config(cwd, str(out))
    except UserError as exc:
        raise UserError(f"init needs a git repository: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    os.chmod(out, user_file_mode())  # committed to the user's repo: their mode, not the state dir's
    return out
