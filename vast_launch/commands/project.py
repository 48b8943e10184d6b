"""`init` and `config-schema`: setting up a project."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import UserError
from .common import guarded


# --- init and the config reference ----------------------------------------------------------
@click.command()
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="where to write it (default: vast-launch.yaml at the repository root)"
)
@click.option("--force", is_flag=True, help="overwrite an existing file")
@guarded
def init(out, force):
    """Write a commented starter config for this repository (remote, setup and stage command detected).

    \b
    Examples:
      vast-launch init
      vast-launch init --out configs/gpu.yaml
    Then:
      git add vast-launch.yaml && git commit -m "vast-launch config" && git push
      vast-launch --local --auto-shutdown --config vast-launch.yaml     # on this machine first
      vast-launch --auto-shutdown --config vast-launch.yaml             # on a rented GPU
    """

    from .. import gitcheck
    from ..starter import ignore_outputs, write_starter

    try:
        root = gitcheck.repo_root(Path.cwd())
    except UserError as exc:
        raise UserError(f"init needs a git repository: {exc}")
    target = Path(out) if out else root / "vast-launch.yaml"
    written = write_starter(Path.cwd(), target, force)
    rel, ignored = os.path.relpath(written), ignore_outputs(root)

    add = f"{rel} .gitignore" if ignored else rel
    config = "" if rel == "vast-launch.yaml" else f" --config {rel}"
    click.echo(
        (f"added to .gitignore: {', '.join(ignored)} (outputs of local runs: a launch needs a clean tree)\n" if ignored else "")
        + f"wrote {rel}: read it, then\n"
        f"  git add {add} && git commit -m 'vast-launch config' && git push\n"
        f"  vast-launch --local{config}    # a first run on this machine\n"
        f"  vast-launch{config}            # on a rented GPU"
    )


@click.command("config-schema")
@click.option("--markdown", is_flag=True, help="the reference page (every key, type, default, meaning) instead")
def config_schema(markdown):
    """Print the config's JSON Schema, for editor completion (or its reference, with --markdown).

    \b
    Examples (VS Code, YAML extension):
      vast-launch config-schema > .vast-launch.schema.json
      # first line of the config:  # yaml-language-server: $schema=.vast-launch.schema.json
    """
    from ..config_docs import json_schema, reference_markdown

    click.echo(reference_markdown() if markdown else json.dumps(json_schema(), indent=2), nl=not markdown)
