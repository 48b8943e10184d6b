"""`vast-launch`: the command group (launch is the default command); the commands live in `commands/`.

Imports stay inside the commands so that `--help`, `status` and `check` start fast.
"""

from __future__ import annotations

import sys

import click

from .commands import ending, launching, outputs, project, reporting, supervising, watching
from .commands.common import Debug, fail
from .errors import UserError
from .vast.serve_local_cloud import local_cloud


class DefaultToLaunch(click.Group):
    """`vast-launch --auto-shutdown --config F` means `vast-launch launch --auto-shutdown --config F`.

    Every error a command lets through becomes one line and exit 1; `--debug` (anywhere before `--`)
    shows the traceback instead.
    """

    def parse_args(self, ctx, args):
        cut = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:cut]:
            Debug.on = True
            args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            if not args[0].startswith("-"):  # launch takes options only: a word is a mistyped command
                import difflib

                close = difflib.get_close_matches(args[0], sorted(self.commands), n=1)
                hint = f" Did you mean `vast-launch {close[0]}`?" if close else " See `vast-launch --help`."
                raise click.UsageError(f"no such command {args[0]!r}.{hint}", ctx)
            args = ["launch", *args]
        elif not args:
            args = ["--help"]
        return super().parse_args(ctx, args)

    def main(self, *args, **kwargs):
        """Usage errors as one line too (click's own form is a usage block and three lines)."""
        from .state_dir import keep_new_files_private

        keep_new_files_private()
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "vast-launch"
            hint = "" if "vast-launch" in exc.format_message() else f" (see `{where} --help`)"
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UserError as exc:  # the user's to fix: its lines, also with --debug
            fail(str(exc))
        except Exception as exc:
            if Debug.on:
                raise
            sqlite3 = sys.modules.get("sqlite3")  # not imported at start-up: `--help` and `check` need no SQLite
            if sqlite3 is not None and isinstance(exc, sqlite3.Error):  # the ledger, mid-command
                from .ledger import ledger_problem
                from .state_dir import default_home

                fail(ledger_problem(exc, default_home() / "ledger.sqlite"))
            from .errors import one_line

            fail(one_line(exc), getattr(exc, "exit_code", 1))


@click.group(cls=DefaultToLaunch, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vast-launch")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    help="show the traceback of an error instead of its one line (also VAST_LAUNCH_DEBUG=1)",
)
def main() -> None:
    """Run training on rented Vast.ai GPUs; the instance always destroys itself.

    \b
    Examples:
      vast-launch --auto-shutdown --config configs/burgers.yaml
      vast-launch --local --auto-shutdown --config configs/burgers.yaml --profile smoke
      vast-launch check --config configs/burgers.yaml --json
      vast-launch status
      vast-launch reap --dry-run
    """


for command in (
    launching.launch,
    launching.check,
    launching.offers,
    watching.status,
    watching.logs,
    watching.ssh,
    outputs.pull,
    ending.down,
    ending.reap,
    supervising.watch,
    reporting.report,
    reporting.cost,
    reporting.metrics,
    project.init,
    project.config_schema,
    local_cloud,
):
    main.add_command(command)
