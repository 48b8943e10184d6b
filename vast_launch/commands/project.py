"""`init`, `config-schema` and `local-cloud serve`: setting up a project and the local cloud."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import click

from ..errors import UserError
from .common import _fail, _run


# --- init and the config reference ----------------------------------------------------------
@click.command()
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="where to write it (default: vast-launch.yaml at the repository root)"
)
@click.option("--force", is_flag=True, help="overwrite an existing file")
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

    def go():
        from .. import gitcheck
        from ..starter import ignore_outputs, write_starter

        try:
            root = gitcheck.repo_root(Path.cwd())
        except UserError as exc:
            raise UserError(f"init needs a git repository: {exc}")
        target = Path(out) if out else root / "vast-launch.yaml"
        written = write_starter(Path.cwd(), target, force)
        return os.path.relpath(written), ignore_outputs(root)

    rel, ignored = _run(go)
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


# --- local cloud ----------------------------------------------------------------------------
@click.group("local-cloud")
def local_cloud():
    """The embedded Vast-compatible cloud that rents out this machine."""


@local_cloud.command("serve")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port")
@click.option("--price", default=0.0, show_default=True, help="$/h of each offer")
@click.option("--root", default=None, help="where instances run (default: a temp dir)")
@click.option(
    "--rentals-per-offer",
    default=4,
    show_default=True,
    help="instances one offer hosts at once; a full offer leaves search until one is destroyed",
)
@click.option(
    "--keep-destroyed", is_flag=True, help="keep a destroyed instance's files (on Vast they are gone; for debugging and tests)"
)
def serve(port, price, root, rentals_per_offer, keep_destroyed):
    """Run the local cloud in the foreground; point the vastai CLI at it with VAST_URL.

    The account key is written to a file (mode 0600), never printed.

    \b
    Example:
      vast-launch local-cloud serve --port 8765 &
      VAST_URL=http://127.0.0.1:8765 VAST_API_KEY=$(cat KEYFILE) vastai search offers
    """
    from ..localcloud import LocalCloud
    from ..state_dir import default_home, private_dir

    if price < 0:
        _fail(f"--price: must be >= 0 (got {price})")
    if rentals_per_offer < 1:
        _fail(f"--rentals-per-offer: must be >= 1 (got {rentals_per_offer})")
    keyfile = private_dir(default_home()) / "localcloud_api_key"
    try:  # the key file is hidden from every instance, as Vast's account key is from its containers
        lc = LocalCloud(
            root=root,
            port=port,
            price_dph=price,
            rentals_per_offer=rentals_per_offer,
            hidden_paths=(keyfile,),
            keep_destroyed=keep_destroyed,
        )
    except OSError as exc:
        _fail(f"local cloud: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    with contextlib.suppress(FileNotFoundError):
        keyfile.unlink()  # a new file, so it is 0600 from its first byte
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(lc.api_key)
    click.echo(f"local cloud listening on {lc.url}\nexport VAST_URL={lc.url}\nexport VAST_API_KEY=$(cat {keyfile})")
    from ..interrupts import signals_interrupt

    try:
        with signals_interrupt():
            lc.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped; every instance it ran was destroyed")
