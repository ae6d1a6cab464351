"""The `jepardy` command line: each command parses, calls the library once, and prints.

The commands live in one module per group (sweep, runs, report, data) and are merged into
`app` here. User mistakes raise `UserError` anywhere below; `main()` prints them as one line
on stderr and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jepardy import __version__
from jepardy.cli import data, report, runs, sweep
from jepardy.cli.options import plain_arguments
from jepardy.cli.output import err_console, tagged
from jepardy.collector import skip_collection_at_exit
from jepardy.errors import UserError

app = typer.Typer(
    help="Matched-control ablation sweeps for Parameter Golf trainers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: rich markup would eat `[slurm]` from help texts, and click rewraps
    # every paragraph to the terminal's width.
    rich_markup_mode=None,
)
app.add_typer(sweep.app)
app.add_typer(runs.app)
app.add_typer(report.app)
app.add_typer(data.app, name="data")
plain_arguments(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"jepardy {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options of `jepardy` itself, before the command."""


def main() -> None:
    """Console-script entry point: one line on stderr for a user mistake."""
    skip_collection_at_exit()
    try:
        app()
    except UserError as err:
        err_console.print(tagged("error:", "red", str(err)), soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
