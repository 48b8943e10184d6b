"""Render onstart/bootstrap.sh for one launch. The result holds no secret and fits Vast's limit."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

TEMPLATE = Path(__file__).resolve().parent.parent / "onstart" / "bootstrap.sh"
# Vast accepts args+onstart up to 4,096 characters (docs elsewhere say 4,048); keep a margin.
MAX_ONSTART_CHARS = 4000


@dataclass
class OnstartSpec:
    launch_id: str
    commit: str
    repo: str
    group: str
    deadline: int
    profile: str
    config_path: str
    stages: list[tuple[str, str]]  # (name, command)
    setup: str
    auto_shutdown: bool


def render_onstart(spec: OnstartSpec) -> str:
    for name, cmd in spec.stages:
        if "\t" in cmd or "\n" in cmd or "VL_STAGES" in cmd:
            raise UserError(f"stages.{name}.command: must be one line without tabs")
    values = {
        "LAUNCH_ID": shlex.quote(spec.launch_id),
        "COMMIT": shlex.quote(spec.commit),
        "REPO": shlex.quote(spec.repo),
        "DEADLINE": str(int(spec.deadline)),
        "AUTO": "1" if spec.auto_shutdown else "0",
        "GROUP": shlex.quote(spec.group),
        "PROFILE": shlex.quote(spec.profile),
        "CONFIG": shlex.quote(spec.config_path),
        "STAGES_TSV": "\n".join(f"{name}\t{cmd}" for name, cmd in spec.stages),
        "SETUP": spec.setup.strip() or "true",
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise RuntimeError("onstart template has an unfilled placeholder")
    if len(text) > MAX_ONSTART_CHARS:
        raise UserError(
            f"rendered onstart is {len(text)} characters, over Vast's limit of {MAX_ONSTART_CHARS}: "
            "shorten stages.*.command or code.setup"
        )
    return text


def assert_no_secrets(text: str, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        if value and len(value) >= 4 and value in text:
            raise RuntimeError(f"secret {name} would leak into the onstart text")
