"""`train.profile_schema`: every `train.profiles` entry must match the JSON Schema the repository ships,
so that a typo (`operator.itres`) is refused before anything is rented, not trained with a default on a
rented GPU. The launcher reads the schema file; it never imports the trainer."""

from __future__ import annotations

import difflib
import json
import stat
from pathlib import Path

from .config import LaunchConfig


def _unknown_keys(err) -> list[str]:
    known = list((err.schema.get("properties") or {}))
    out = []
    for key in sorted(set(err.instance) - set(known)):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
        out.append(f"{key}: unknown key ({hint})")
    return out


MAX_SCHEMA_BYTES = 1_000_000


def _read_schema(root: Path, rel: str) -> str:
    """The schema's text: a regular file inside the repository (the instance reads the same commit), at
    most MAX_SCHEMA_BYTES; never a device, a FIFO or a path outside it (it would block or read forever)."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError("must be a path inside the repository (relative to its root)")
    if not path.exists():
        raise ValueError("no such file in the repository")
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError("not a regular file")
    if path.stat().st_size > MAX_SCHEMA_BYTES:
        raise ValueError(f"{path.stat().st_size} bytes is not a schema (at most {MAX_SCHEMA_BYTES})")
    with open(path, "rb") as f:
        data = f.read(MAX_SCHEMA_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None


def profile_problems(cfg: LaunchConfig, root: Path) -> list[str]:
    """One line per problem; empty when there is no schema or every profile matches it."""
    rel = cfg.train.profile_schema
    if not rel:
        return []
    label = f"train.profile_schema {rel}"
    try:
        text = _read_schema(root, rel)
    except OSError as exc:
        return [f"{label}: {exc.strerror}"]
    except ValueError as exc:
        return [f"{label}: {exc}"]
    try:
        schema = json.loads(text)
    except ValueError as exc:
        return [f"{label}: not JSON ({exc})"]
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [f"{label}: not a JSON Schema ({exc.message})"]
    validator = Draft202012Validator(schema)
    problems = []
    for name, profile in cfg.train.profiles.items():
        for err in sorted(validator.iter_errors(profile), key=lambda e: [str(p) for p in e.absolute_path]):
            where = ".".join(["train.profiles", name, *(str(p) for p in err.absolute_path)])
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                problems += [f"{where}.{line}" for line in _unknown_keys(err)]
            else:
                problems.append(f"{where}: {err.message}")
    return problems
