"""The targets by name: the one place (with cli.py) that puts the backends together for the commands.

A command asks `get(name)`, `of_row(row)` or `chosen(...)` for a `Target` (targets/base.py) and calls it; it
never tests a target's name nor imports a backend. A target's own launch options (SLURM's walltime, the
local cloud's price) are declared here, as data, so that `--help` needs no backend imported; the launch
command takes them all and hands a target its own.

To add a target: a package beside vast/ and slurm/ with a `Target` subclass (see targets/base.py for what
each operation must do), one line in TARGETS, its options in OPTIONS, and its tests.
"""

from __future__ import annotations

import importlib
from typing import Optional

import click

from ..errors import UserError
from .base import LaunchRequest, Target

# name -> (module, class); imported only when a command needs that target
TARGETS = {
    "vast": ("vast_launch.vast.target", "VastTarget"),
    "local": ("vast_launch.vast.target", "LocalTarget"),
    "slurm": ("vast_launch.slurm.target", "SlurmTarget"),
}
DEFAULT = "vast"
# targets whose launches rent nothing (a cluster one already has): `cost` leaves them out
NOT_BILLED = ("slurm",)
# a flag that chooses a target, as `--local` chooses `--target local`
FLAGS = {"local": ("--local", "rent this machine from the embedded local cloud (no Vast account); same as --target local")}

# each target's own launch options: (target, option declaration, click keyword arguments)
OPTIONS = [
    ("local", "--price", dict(type=click.FloatRange(0), default=None, help="--local: the local cloud's $/h (default 0)")),
    ("slurm", "--pipeline", dict(default=None, help="--target slurm: which slurm.pipelines entry (default: the first)")),
    ("slurm", "--list-pipelines", dict(is_flag=True, default=None, help="--target slurm: list the pipelines and their resources")),
    (
        "slurm",
        "--from-stage",
        dict(default=None, help="--target slurm: resubmit from this stage, reusing the last submission's outputs and W&B group"),
    ),
    ("slurm", "--walltime", dict(default=None, metavar="HH:MM:SS", help="--target slurm: every stage's time limit")),
    ("slurm", "--memory", dict(default=None, metavar="SIZE", help="--target slurm: every stage's memory, e.g. 96G")),
    ("slurm", "--cpus", dict(default=None, type=click.IntRange(1), help="--target slurm: every stage's CPUs")),
    ("slurm", "--gpus", dict(default=None, type=click.IntRange(0), help="--target slurm: every stage's GPUs")),
    ("slurm", "--partition", dict(default=None, help="--target slurm: partition for every stage")),
]

_loaded: dict[str, Target] = {}


def names() -> list[str]:
    return list(TARGETS)


def get(name: str) -> Target:
    if name not in TARGETS:
        raise UserError(f"no target {name!r}: one of {', '.join(TARGETS)}")
    if name not in _loaded:
        module, cls = TARGETS[name]
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]


def of_row(row: dict) -> Target:
    """The target a launch ran on (rows written before targets were recorded ran on the default)."""
    return get(row.get("target") or DEFAULT)


def _key(decl: str) -> str:
    return decl.lstrip("-").replace("-", "_")


def launch_options(fn):
    """Every target's own options and choosing flags, on the launch command (and `check`)."""
    for target, decl, kwargs in reversed(OPTIONS):
        fn = click.option(decl, _key(decl), **kwargs)(fn)
    return target_flags(fn)


def target_flags(fn):
    """Only the flags that choose a target (`--local`), for commands that take no launch options."""
    for target, (decl, help_text) in FLAGS.items():
        fn = click.option(decl, _key(decl), is_flag=True, help=help_text)(fn)
    return fn


def chosen(target: Optional[str], given: dict) -> tuple[Target, dict]:
    """The target the command line names (--target, or a flag such as --local), and the options it takes;
    an option of another target is one line naming the one it belongs to."""
    flagged = [name for name, (decl, _) in FLAGS.items() if given.get(_key(decl))]
    name = flagged[0] if flagged else (target or DEFAULT)
    if flagged and target not in (None, DEFAULT, name):
        raise UserError(f"{FLAGS[name][0]} and --target {target}: choose one")
    own = {}
    for owner, decl, _ in OPTIONS:
        value = given.get(_key(decl))
        if value in (None, False):
            continue
        if owner != name:
            how = FLAGS[owner][0] if owner in FLAGS else f"--target {owner}"
            raise UserError(f"{decl}: only with {how}")
        own[_key(decl)] = value
    return get(name), own


__all__ = ["DEFAULT", "LaunchRequest", "Target", "chosen", "get", "launch_options", "names", "of_row", "target_flags"]
