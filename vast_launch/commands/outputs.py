"""`pull`: a launch's outputs from its outputs store, after its instance is gone (or while it runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import UserError
from .common import find, guarded, ledger


@click.command()
@click.argument("launch_id")
@click.option("--to", "dest", default=None, type=click.Path(file_okay=False), help="where to put them (default: ./<launch id>)")
@click.option("--stage", default=None, help="only what this stage wrote ($VL_OUT/<stage>/)")
@click.option("--list", "only_list", is_flag=True, help="list the stored files and their sizes; download nothing")
@guarded
def pull(launch_id, dest, stage, only_list):
    """Download what a launch's stages wrote to $VL_OUT (checkpoints, evaluations, offline W&B runs).

    They are read from the launch's outputs store (outputs.url; --local launches: a folder under the
    state dir), so they are there after the instance destroyed itself. Files already complete locally
    are downloaded again; a file is written under a temporary name and renamed when whole.

    \b
    Examples:
      vast-launch pull burgers-20261122-120000-ab12
      vast-launch pull burgers-20261122-120000-ab12 --stage operator --to ckpt/
      vast-launch pull burgers-20261122-120000-ab12 --list
    """

    from ..store import LaunchOutputs, StoreSpec

    with ledger() as led:
        row = find(led, launch_id)
    spec = StoreSpec.of_row(row)
    if spec is None:
        raise UserError(f"{row['id']} had no outputs store (outputs.url): its outputs stayed on its instance")
    found = LaunchOutputs(spec, row["id"])
    files = found.outputs(stage)
    if not files:
        what = f"stage {stage}'s outputs" if stage else "outputs"
        raise UserError(f"no {what} stored for {row['id']} at {found.where('out/')}")
    if only_list:
        for rel, size in files:
            click.echo(f"{size:>12}  {rel}")
        click.echo(f"{len(files)} file(s), {sum(s for _, s in files) / 1e6:.1f} MB at {found.where('out/')}", err=True)
        return
    target = Path(dest) if dest else Path(row["id"])
    n, total = _download(found, target, stage)
    click.echo(f"pulled {n} file(s), {total / 1e6:.1f} MB from {found.where('out/')} into {target}")


def _download(found, target: Path, stage):
    """With a progress bar on a terminal; a line per file otherwise (logs and pipes)."""
    if not sys.stderr.isatty():
        return found.pull(target, stage)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("pull", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name[-40:])

        return found.pull(target, stage, progress)
