"""`vast-launch local-cloud serve`: the embedded Vast-compatible cloud in the foreground, for the vastai
CLI and the tests (a launch with --local runs its own inside the launcher)."""

from __future__ import annotations

import contextlib
import os
import sys

import click


def fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


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
        fail(f"--price: must be >= 0 (got {price})")
    if rentals_per_offer < 1:
        fail(f"--rentals-per-offer: must be >= 1 (got {rentals_per_offer})")
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
        fail(f"local cloud: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
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
