"""Load and validate the launch YAML into typed objects.

Every validation error names the key path and says what would be accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, Optional
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .config_base import CONTROL, STAGE_NAME, Strict
from .config_slurm import Slurm
from .errors import ConfigInvalid, UserError

DEFAULT_STAGE_COMMAND = 'python -m ups.train --config "$VL_CONFIG" --profile "$VL_PROFILE" --stage {stage} --out "$VL_OUT"'


class Resources(Strict):
    gpu_names: list[str] = Field(default_factory=list, description="acceptable GPU models, e.g. RTX_4090")
    num_gpus: int = Field(1, ge=1, le=16, description="GPUs per instance")
    min_gpu_ram_gb: float = Field(0, ge=0, le=1024, description="least memory per GPU, GB")
    disk_gb: float = Field(20, ge=8, le=100_000, description="Vast requires at least 8 GB")
    max_dph: Optional[float] = Field(None, gt=0, le=128, description="max $/hour, all-in")
    min_reliability: float = Field(0.95, ge=0, le=1, description="host reliability score, 0 to 1")
    min_cuda: Optional[float] = Field(None, gt=0, le=99, description="least CUDA version the host driver supports, e.g. 12.4")
    min_duration_hours: float = Field(0, ge=0, le=24 * 365, description="host contract must last at least this long")
    interruptible: bool = Field(False, description="rent an interruptible (bid) instance; needs bid_price")
    bid_price: Optional[float] = Field(None, ge=0.001, le=128, description="$/hour bid for an interruptible instance")
    verified: bool = Field(True, description="only hosts Vast has verified")
    regions: list[str] = Field(default_factory=list, description="ISO country codes, e.g. [US, CA]")
    image: str = Field(
        "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        min_length=1,
        max_length=1024,
        description="container image; needs python3, git optional (see code.archive_url)",
    )
    rank_by: Literal["price", "dlperf_per_dollar"] = Field(
        "price", description="which fitting offer wins: the cheapest, or the most DLPerf per dollar"
    )

    @field_validator("gpu_names")
    @classmethod
    def _gpu_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name.strip() or CONTROL.search(name):
                raise ValueError("GPU names must be non-empty text on one line, e.g. RTX_4090")
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        for code in v:
            if not re.match(r"^[A-Z]{2}$", code):
                raise ValueError(f"{code!r} is not an ISO country code (two capital letters, e.g. US)")
        return v

    @model_validator(mode="after")
    def _bid_with_interruptible(self) -> "Resources":
        if self.interruptible and self.bid_price is None:
            raise ValueError("interruptible: true needs bid_price ($/hour you bid; see `vast-launch offers` for min_bid)")
        return self


class Recover(Strict):
    max_attempts: int = Field(3, ge=2, le=20, description="instances one launch may use in all, the first included")
    stopped_minutes: float = Field(
        10, ge=0, le=24 * 60, description="an instance stopped (outbid) this long is destroyed and the launch goes on elsewhere"
    )


class Lifecycle(Strict):
    auto_shutdown: bool = Field(True, description="the launch's default; --auto-shutdown/--no-auto-shutdown override")
    max_hours: float = Field(4.0, ge=1 / 3600, le=24 * 14, description="hard deadline; the instance destroys itself then")
    idle_minutes: Optional[float] = Field(
        None, gt=0, le=24 * 60 * 14, description="destroy after this long with no stage process and no GPU use (in the instance)"
    )
    max_cost_usd: Optional[float] = Field(
        None, gt=0, le=1_000_000, description="the deadline becomes the earlier of max_hours and when the rented rate spends this"
    )
    loading_timeout_minutes: float = Field(20, gt=0, le=24 * 60, description="longest wait for `running`; then the next offer")
    reap_grace_minutes: float = Field(10, ge=0, le=24 * 60 * 14, description="`vast-launch reap` waits this long past the deadline")
    recover: Optional[Recover] = Field(
        None,
        description="an instance outbid or stopped too long, exited, offline or gone without a result is destroyed and the "
        "launch resumes on another offer from its outputs store (needs outputs.url), by its following launcher or, "
        "detached, by `vast-launch watch` / `reap --recover`; max_cost_usd covers every attempt",
    )


class Code(Strict):
    repo: Optional[str] = Field(None, description="clone URL; default: the git remote 'origin'")
    remote: str = Field("origin", description="the git remote the commit must be pushed to")
    setup: str = Field(
        "pip install -q -e '.[train]'",
        description=(
            "shell command run once in the clone before the stages "
            "(--local too: into the instance's own Python, never your environment)"
        ),
    )
    archive_url: Optional[str] = Field(
        None, max_length=1024, description="tarball URL with {sha}, for images without git; default: GitHub's, for a GitHub remote"
    )

    @field_validator("archive_url")
    @classmethod
    def _archive_url(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if "{sha}" not in v:
            raise ValueError("must contain {sha}, where the commit goes (e.g. https://git.example/r/-/archive/{sha}.tar.gz)")
        if urlsplit(v).scheme not in ("http", "https") or CONTROL.search(v):
            raise ValueError("expected an http(s) URL on one line")
        return v

    @field_validator("repo", "remote")
    @classmethod
    def _one_line_code(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (CONTROL.search(v) or not v.strip()):
            raise ValueError("must be non-empty text on one line")
        return v


class Wandb(Strict):
    @field_validator("project", "entity", "group")
    @classmethod
    def _one_line_wandb(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and CONTROL.search(v):
            raise ValueError("must be on one line, without control characters")
        return v

    project: str = Field("ups-burgers", min_length=1, description="W&B project (WANDB_PROJECT on the instance)")
    entity: Optional[str] = Field(None, description="W&B entity (team or user); default: the key's")
    group: Optional[str] = Field(None, description="W&B group for every stage; default: the launch id")
    mode: Literal["online", "offline", "disabled"] = Field(
        "online", description="offline runs stay on the instance and go with it; --local defaults to offline"
    )


class Outputs(Strict):
    url: Optional[str] = Field(
        None,
        max_length=1024,
        description="where a launch's outputs, log and result.json outlive its instance: s3://bucket/prefix "
        "(any S3-compatible store) or file:///path (a directory on this machine: the local cloud only); "
        "--local launches default to a directory under the state dir",
    )
    endpoint_url: Optional[str] = Field(
        None, max_length=1024, description="an S3-compatible service's endpoint, e.g. https://<account>.r2.cloudflarestorage.com"
    )
    region: Optional[str] = Field(
        None, max_length=64, description="the bucket's region (R2: auto); default AWS_REGION, else us-east-1"
    )
    sync_every_minutes: float = Field(
        10, ge=0, le=24 * 60, description="sync $VL_OUT this often while a stage runs (0: only at stage ends and at the end)"
    )
    final_sync_timeout_s: int = Field(
        120,
        ge=5,
        le=3600,
        description="the final sync may take this long (at most half of lifecycle.max_hours); the deadline watchdog "
        "starts it this much earlier, so the instance is still gone by the deadline",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme == "s3":
            if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", parts.netloc or ""):
                raise ValueError("expected s3://bucket/prefix with a bucket name of 3-63 lowercase letters, digits, '.', '-'")
        elif parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError("expected file:///absolute/path")
        else:
            raise ValueError("expected s3://bucket/prefix or file:///path")
        if any(ord(c) < 32 or c in "\"'`$\\" for c in v):
            raise ValueError("control characters, quotes, '$' and backslashes are not accepted in a store URL")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).netloc):
            raise ValueError("expected http(s)://host[:port]")
        return v


class Stage(Strict):
    name: str = Field(..., description="letters, digits, '_', '-', '.'")
    command: Optional[str] = Field(
        None, description="shell command; {stage} becomes the name; default: the ups trainer for that stage"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not STAGE_NAME.match(v):
            raise ValueError("stage names are letters, digits, '_', '-', '.'")
        return v

    @field_validator("command")
    @classmethod
    def _one_line(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (CONTROL.search(v) or not v.strip()):
            raise ValueError("must be one non-empty line: no newline, tab or other control character (join commands with &&)")
        return v

    def render_command(self) -> str:
        return (self.command or DEFAULT_STAGE_COMMAND).replace("{stage}", self.name)


class Train(Strict):
    profile: str = Field("smoke", description="the profile used unless --profile names another ($VL_PROFILE)")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named settings for the trainer; --profile picks one"
    )
    profile_schema: Optional[str] = Field(
        None,
        max_length=1024,
        description="a JSON Schema file (path from the repository root) that every profile must "
        "match; `check` refuses unknown keys and bad values before anything is rented",
    )

    @model_validator(mode="after")
    def _profile_exists(self) -> "Train":
        if self.profiles and self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not one of {sorted(self.profiles)}")
        return self


class LaunchConfig(Strict):
    name: str = Field(..., min_length=1, max_length=64, description="prefix of every launch id and instance label")
    resources: Resources = Field(default_factory=Resources, description="what to rent")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="when the instance ends")
    code: Code = Field(default_factory=Code, description="what the instance fetches and installs")
    wandb: Wandb = Field(default_factory=Wandb, description="Weights & Biases")
    stages: list[Stage] = Field(
        ..., min_length=1, description="run in order; a failed stage ends the run. A bare name is {name: NAME}"
    )
    train: Train = Field(default_factory=Train, description="profiles passed to the stages")
    slurm: Slurm = Field(default_factory=Slurm, description="--target slurm")
    outputs: Outputs = Field(default_factory=Outputs, description="the outputs store: what outlives the instance")

    # Where the file was read from; not part of the YAML.
    source: Optional[str] = Field(None, exclude=True)

    @field_validator("stages", mode="before")
    @classmethod
    def _stages_from_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": s} if isinstance(s, str) else s for s in v]
        return v

    @model_validator(mode="after")
    def _unique_stages(self) -> "LaunchConfig":
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stages: duplicate stage names {dupes}")
        return self

    @model_validator(mode="after")
    def _recovery_resumes_from_a_store(self) -> "LaunchConfig":
        if self.lifecycle.recover is not None and not self.outputs.url:
            raise ValueError("lifecycle.recover needs outputs.url: the next instance resumes from what the store holds")
        return self

    @model_validator(mode="after")
    def _pipeline_stages_exist(self) -> "LaunchConfig":
        known = set(self.stage_names)
        for name, stages in self.slurm.pipelines.items():
            unknown = [s for s in stages if s not in known]
            if unknown:
                raise ValueError(f"slurm.pipelines.{name}: stage(s) {unknown} are not in stages {sorted(known)}")
            if not stages:
                raise ValueError(f"slurm.pipelines.{name}: no stages")
        return self

    def choose_profile(self, given: Optional[str]) -> Optional[str]:
        """The training profile a launch passes to its stages ($VL_PROFILE): --profile, else train.profile;
        None for a config without train.profiles (then --profile is an error, not silently ignored)."""
        profiles = self.train.profiles
        if not profiles:
            if given:
                raise UserError(f"--profile {given}: {self.source or 'the config'} has no train.profiles to choose from")
            return None
        name = given or self.train.profile
        if name not in profiles:
            raise UserError(f"--profile {name}: not one of {sorted(profiles)} (train.profiles)")
        return name

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def config_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_error(path: str, err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key '{loc}' (check the spelling; every key: `vast-launch config-schema --markdown`)"
    if kind == "missing":
        return f"{path}: missing required key '{loc}'"
    got = err.get("input")
    got_text = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{path}: {loc}: {msg}{got_text}"


def parse_config(data: Any, path: str = "<config>") -> LaunchConfig:
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys (name, resources, stages, ...)")
    try:
        cfg = LaunchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid([_format_error(path, e) for e in exc.errors()])
    cfg.source = path
    return cfg


MAX_CONFIG_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases (`*name` could expand a small file into a huge document) and without
    duplicate keys (YAML lets the last one win silently: a 1 h deadline became 300 h)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not accepted in a config", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                again = key in seen
            except TypeError:  # an unhashable key: the constructor says so below
                continue
            if again:
                raise DuplicateKey(f"duplicate key {key!r} at lines {seen[key]} and {line} (YAML would keep the last)")
            seen[key] = line
        return super().construct_mapping(node, deep)


class DuplicateKey(yaml.YAMLError):
    pass


def load_config(path: str | Path) -> LaunchConfig:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: config file not found (pass --config PATH, e.g. configs/burgers.yaml)")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{p}: {p.stat().st_size} bytes is not a config (at most {MAX_CONFIG_BYTES})")
    try:
        data = yaml.load(p.read_bytes().decode("utf-8"), Loader=_NoAliasLoader)
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not UTF-8 text (byte {exc.start} cannot be decoded)")
    except RecursionError:
        raise UserError(f"{p}: nested too deeply to be a config")
    except DuplicateKey as exc:
        raise UserError(f"{p}: {exc}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{p}: malformed YAML{where}: {problem}")
    try:
        return parse_config(data, str(p))
    except RecursionError:
        raise UserError(f"{p}: nested too deeply to be a config")
