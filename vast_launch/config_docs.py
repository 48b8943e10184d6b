"""The config's JSON Schema (for editor completion) and its reference page, both drawn from the models
in config.py, so neither can drift from what `load_config` accepts."""

from __future__ import annotations

import json

from .config import LaunchConfig

SCHEMA_ID = "https://github.com/vast-launch/vast-launch/config.schema.json"


def json_schema() -> dict:
    schema = LaunchConfig.model_json_schema()
    schema["properties"].pop("source", None)  # where the file was read from, not a key
    stage = schema["properties"]["stages"]
    stage["items"] = {"anyOf": [stage["items"], {"type": "string", "description": "a stage name"}]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "vast-launch config"
    return schema


def _type(prop: dict, defs: dict) -> str:
    if "$ref" in prop:
        return "mapping (below)"
    if "anyOf" in prop:
        kinds = [_type(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(kinds) + (" or null" if any(p.get("type") == "null" for p in prop["anyOf"]) else "")
    if "enum" in prop:
        return " \\| ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in prop and isinstance(prop["additionalProperties"], dict):
        return f"mapping of name to {_type(prop['additionalProperties'], defs)}"
    return {"number": "number", "integer": "integer", "string": "string", "boolean": "true/false", "object": "mapping"}.get(kind, kind)


def _limits(prop: dict) -> str:
    words = []
    for p in [prop, *prop.get("anyOf", [])]:
        for key, sign in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
            ("minLength", "length >="),
            ("maxLength", "length <="),
            ("minItems", "items >="),
        ):
            if key in p:
                words.append(f"{sign} {p[key]}")
    return ", ".join(words)


def _default(prop: dict, required: bool) -> str:
    if required:
        return "**required**"
    if "$ref" in prop:
        return "(below)"
    if "default" not in prop:
        return "empty" if prop.get("type") in ("array", "object") else "-"
    value = prop["default"]
    return f"`{json.dumps(value)}`" if value not in ({}, []) else "empty"


def reference_markdown() -> str:
    schema = json_schema()
    defs = schema["$defs"]
    out = [
        "# Config reference",
        "",
        "Generated from the config models (`vast-launch config-schema --markdown`); "
        "`vast-launch config-schema` prints the JSON Schema for editor completion. "
        "`vast-launch init` writes a commented starter config. Unknown keys are errors.",
        "",
    ]

    def section(title: str, node: dict, prefix: str, intro: str = "") -> list[tuple[str, dict]]:
        lines = [
            f"## {title}",
            "",
            *([intro, ""] if intro else []),
            "| key | type | default | limits | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        nested = []
        required = set(node.get("required", []))
        for name, prop in node["properties"].items():
            ref = prop.get("$ref") or (prop.get("items", {}).get("$ref") if prop.get("type") == "array" else None)
            if ref is None and "anyOf" in prop.get("items", {}):
                ref = next((p["$ref"] for p in prop["items"]["anyOf"] if "$ref" in p), None)
            if ref is None and "anyOf" in prop:  # an optional section (lifecycle.recover)
                ref = next((p["$ref"] for p in prop["anyOf"] if "$ref" in p), None)
            if ref:
                nested.append((f"{prefix}{name}", defs[ref.split("/")[-1]]))
            meaning = (prop.get("description") or "").replace("|", "\\|")
            lines.append(
                f"| `{prefix}{name}` | {_type(prop, defs)} | {_default(prop, name in required)} | {_limits(prop)} | {meaning} |"
            )
        out.extend(lines + [""])
        return nested

    todo = section("Top level", schema, "")
    while todo:
        key, node = todo.pop(0)
        todo.extend(section(f"`{key}`", node, f"{key}[]." if key == "stages" else f"{key}."))
    out += [
        "### What a stage command gets",
        "",
        "It runs from the root of the clone at the launched commit, after `code.setup`, with: `VL_OUT` "
        "(a directory for outputs: synced to the outputs store when `outputs.url` is set, which `--local` sets to a "
        "folder under the state dir; `vast-launch pull ID` downloads it; without a store it goes with the instance), "
        "`VL_CONFIG` (this "
        "config's path in the repo), `VL_PROFILE`, `VL_LAUNCH_ID`, `WANDB_PROJECT`, `WANDB_MODE` and "
        "`WANDB_RUN_GROUP` (one group for every stage of a launch). A non-zero exit ends the run: the later "
        "stages do not run, and the launch exits with that code.",
        "",
    ]
    section(
        "`slurm.pipelines.NAME.STAGE`",
        defs["SlurmStage"],
        "",
        intro="Each pipeline maps stage names (from `stages`) to the resources of that stage's job:",
    )
    return "\n".join(out).rstrip("\n") + "\n"
