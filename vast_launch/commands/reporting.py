"""`report`, `cost` and `metrics`: what a launch cost and how its runs went."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .. import targets
from ..errors import UserError
from .common import find, guarded, ledger, load, settle_rows


# --- report ---------------------------------------------------------------------------------
@click.command()
@click.argument("launch_id")
@click.option(
    "--plot",
    "with_plot",
    is_flag=True,
    help="also a PNG: a panel per metric the stages logged, and rollout nRMSE when evaluated (needs matplotlib)",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="the launch's outputs folder (default: read from its outputs store)",
)
@click.option(
    "--dest", default=None, help="where the Markdown (and PNG) go (default: reports/ under the state dir, never the repository)"
)
@click.option("--json", "as_json", is_flag=True)
@guarded
def report(launch_id, with_plot, out_dir, dest, as_json):
    """After a launch: timeline, cost, hardware, evaluation table and W&B group, as Markdown.

    \b
    Examples:
      vast-launch report burgers-20261122-120000-ab12 --plot
      vast-launch report 30001 --out path/to/out --json
    """

    from ..reports import report as rep

    with ledger() as led:
        row = find(led, launch_id)
        data = rep.build(led, row, Path(out_dir) if out_dir else _stored_outputs(row), _log_lines(led, row))
    from ..state_dir import default_home

    dest_dir = Path(dest) if dest else default_home() / "reports"
    dest_dir.mkdir(parents=True, exist_ok=True)
    png = rep.plot(data, dest_dir / f"{row['id']}.png") if with_plot else None
    md = dest_dir / f"{row['id']}.md"
    text = rep.to_markdown(data, png)
    md.write_text(text)
    if as_json:
        data["curves"] = [{"key": c["key"], "x": c["x"], "points": len(c["points"])} for c in data["curves"]]
        click.echo(
            json.dumps(
                {**data, "markdown": str(md), "png": str(png) if png else None, "panels": rep.panel_count(data) if png else 0},
                indent=2,
            )
        )
    else:
        click.echo(text)
        click.echo(f"written: {md}" + (f" and {png}" if png else ""))


def _log_lines(ledger, row) -> list[str]:
    """The launch's log as its outputs store keeps it, else the lines its follower kept in the ledger."""
    from ..store import attempt_log

    text, _ = attempt_log(row)
    if text is not None:
        return text.splitlines()
    return ledger.kept_log_lines(row["id"])


def _stored_outputs(row):
    """What report reads of a launch's outputs: its outputs store's (downloaded once, checkpoints left out),
    else a SLURM submission's folder."""
    from ..state_dir import default_home
    from ..store import StoreSpec, report_inputs

    spec = StoreSpec.of_row(row)
    if spec is not None:
        return report_inputs(spec, row["id"], default_home() / "cache" / row["id"] / "out")
    return targets.of_row(row).outputs_dir(row)


# --- cost -----------------------------------------------------------------------------------
TABLE_ROWS = 200  # a table longer than this is for nobody: the rest with --limit 0, or as json/csv


@click.command()
@click.option("--since", default="30d", show_default=True, help="launches created after: 24h, 7d, 2w or a date")
@click.option("--until", default=None, help="launches created before: a duration ago or a date")
@click.option(
    "--by",
    "by",
    type=click.Choice(["launch", "group", "stage", "gpu", "day"]),
    default="launch",
    show_default=True,
    help="one row per launch, W&B group, stage, GPU model or UTC day",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option(
    "--reconcile/--no-reconcile",
    default=True,
    show_default=True,
    help="read Vast's invoices for launches whose bill is not settled yet (needs the API key)",
)
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=None,
    help="rows listed: by launch the most recent, else the costliest; the totals count every launch "
    f"(default: {TABLE_ROWS} in the table, every row in json and csv; 0: every row)",
)
@click.option("--sync-wandb", is_flag=True, help="write cost_usd, gpu_hours and dph_total into each W&B run's summary")
@guarded
def cost(since, until, by, fmt, reconcile, limit, sync_wandb):
    """What launches cost: estimate, billed amount and the difference.

    The estimate uses the rates stored at rental time (GPU + storage while running, storage
    only while stopped/exited/loading, nothing while offline); it never looks up today's price.
    Stage costs come from the stage times the instance reported; setup, loading and teardown
    are shown as "(outside stages)", so every grouping adds up to the same total.

    \b
    Examples:
      vast-launch cost --since 7d
      vast-launch cost --limit 0                     # every launch of the window in the table
      vast-launch cost --by stage --format csv > stages.csv
      vast-launch cost --by group --since 2026-11-01 --format json
    """
    from ..reports import cost as costmod
    from ..timespec import parse_when

    t_since, t_until = parse_when(since, "--since"), parse_when(until, "--until")
    notes, billed = [], {}
    with ledger() as led:
        settle_rows(led, led.launches(since=t_since, until=t_until, active_only=True))
        if reconcile:
            for name in targets.names():
                got, more = targets.get(name).reconcile(led, t_since, t_until)
                billed.update(got)
                notes += more
        if limit is None:
            limit = TABLE_ROWS if fmt == "table" else 0
        report = costmod.build_report(
            led, by, t_since, t_until, billed=billed, left_out=targets.NOT_BILLED, stream=not sync_wandb, limit=limit
        )
        report.notes.extend(notes)
        if sync_wandb:
            from ..reports.wandb_api import sync_cost_to_wandb

            launches = (
                report.rows
                if by == "launch" and not limit
                else costmod.launch_rows(led, t_since, t_until, billed=billed, left_out=targets.NOT_BILLED)
            )
            report.notes.append(sync_cost_to_wandb(led, launches))
        from ..reports.cost_output import render

        render(report, fmt, sys.stdout)  # by launch the rows stream from the ledger: inside its `with`


# --- metrics --------------------------------------------------------------------------------
@click.command()
@click.option("--window", default="24h", show_default=True, help="runs created within: 30m, 24h, 7d")
@click.option(
    "--project",
    default=None,
    metavar="ENTITY/PROJECT",
    help="W&B project (default: $WANDB_ENTITY/$WANDB_PROJECT, else wandb.project of --config)",
)
@click.option("--config", "config", default=None, type=click.Path(dir_okay=False), help="take the W&B project from this launch config")
@click.option(
    "--offline-dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="read offline runs under this directory instead of the W&B API (e.g. what `vast-launch pull ID` downloaded)",
)
@click.option("--format", "fmt", type=click.Choice(["json", "prometheus"]), default="json", show_default=True)
@click.option("--push", type=click.Choice(["datadog"]), default=None, help="also send the gauges (needs DD_API_KEY)")
@click.option("--time-limit", default=120.0, show_default=True, help="seconds; what was read by then is reported")
@click.option("--sps-key", default=None, help="summary key with steps/s of push-to-main runs (default: overview/sps)")
@guarded
def metrics(window, project, config, offline_dir, fmt, push, time_limit, sps_key):
    """Run-health metrics from W&B: active, completed/failed, durations, GPU hours, CI and sweeps.

    Only runs created inside the window (or still running) are fetched, with server-side
    filters and lazy pages. GPU hours use each run's logged GPU count (gpu.count in its config).
    Push-to-main CI runs are named github.sky.*; sweep runs belong to a sweep or have .sweep
    in their name.

    \b
    Examples:
      vast-launch metrics --project my-team/burgers --format prometheus > /var/lib/node_exporter/wandb.prom
      vast-launch metrics --offline-dir burgers-20261122-120000-ab12/ --window 7d
      DD_API_KEY=... vast-launch metrics --project my-team/burgers --push datadog
    """
    from ..reports import collector
    from ..reports.wandb_api import ApiRunSource, OfflineRunSource
    from ..timespec import parse_duration

    window_s = parse_duration(window, "--window")
    if time_limit <= 0:
        raise UserError(f"--time-limit: must be > 0 (got {time_limit})")
    if push == "datadog" and not os.environ.get("DD_API_KEY"):
        raise UserError("--push datadog needs DD_API_KEY in the environment")
    if offline_dir:
        source = OfflineRunSource(offline_dir)
    else:
        path = project or _wandb_project(config)
        source = ApiRunSource(path)
    got = collector.collect(source, window_s, time_limit, sps_key)
    for note in got.notes:
        click.echo(f"warning: {note}", err=True)
    if push == "datadog":
        sent = collector.push_datadog(got.metrics, tags=[f"window:{window}"])
        click.echo(f"sent {sent} gauges to Datadog", err=True)

    from ..reports import collector

    click.echo(collector.to_prometheus(got.metrics) if fmt == "prometheus" else json.dumps(got.metrics, indent=2))


def _wandb_project(config) -> str:
    entity, project = os.environ.get("WANDB_ENTITY"), os.environ.get("WANDB_PROJECT")
    if not project and config:
        project = load(config).wandb.project
    if not project:
        raise UserError("no W&B project: pass --project ENTITY/PROJECT, --config, or set WANDB_PROJECT")
    if "/" in project or not entity:
        return project
    return f"{entity}/{project}"
