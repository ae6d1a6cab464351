"""Option and argument types shared by several commands, and the Slurm options."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperArgument, TyperCommand

from jepardy.spec.slurm import SLURM_FIELDS

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="JEPARDY_DB",
        help="SQLAlchemy URL (with ://) or SQLite file path (taken literally).",
    ),
]
SpecArg = Annotated[Path, typer.Argument(help="Sweep spec (TOML), e.g. experiments/smoke.toml.")]
RunIdArg = Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")]
SweepFilterOption = Annotated[str | None, typer.Option("--sweep", help="Only this sweep.")]
RunsDirOption = Annotated[Path, typer.Option(help="Where run directories go.")]
GpusOption = Annotated[
    str | None,
    typer.Option(help="GPU ids to pack runs onto, e.g. 0,1,2,3 (default: detected)."),
]
SlotsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Concurrent runs when there are no GPUs (default: one per CPU core; each runs "
        "single-threaded, so results do not depend on it).",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout-s", help="Per-run limit (default: wallclock_s + 900 s, else none)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="KEY=VALUE: a trainer param for every run, over the spec's [params]; repeatable.",
    ),
]
ExecutorOption = Annotated[str, typer.Option(help="local (this machine) or slurm.")]

SlurmOverrides = dict[str, str | int]  # SlurmOptions' fields given on the command line


def with_slurm_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option per field of SlurmOptions after its own parameters.

    Typer reads a command's parameters with `inspect.signature` (which honours
    `__signature__`) and `typing.get_type_hints` (`__annotations__`), so both are replaced.
    `command` takes a `slurm: SlurmOverrides` parameter instead: the options given, which
    override the spec's [slurm] table.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "slurm"]
    added = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[f.kind | None, typer.Option(help=f.help)],
        )
        for f in SLURM_FIELDS
    ]

    @functools.wraps(command)
    def with_slurm(**kwargs: Any) -> None:
        given = {f.name: kwargs.pop(f.name) for f in SLURM_FIELDS}
        command(**kwargs, slurm={k: v for k, v in given.items() if v is not None})

    parameters = [*own, *added]
    with_slurm.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_slurm.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    return with_slurm


class PlainArgumentsCommand(TyperCommand):
    """A command whose arguments read the same in its usage line, its Arguments list and
    its help text: `RUN_ID`, `RUN_IDS...` (Typer's own usage writes `{run_id}`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None and param.name:
                more = "..." if param.nargs != 1 else ""
                param.metavar = param.name.upper() + more

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        # Typer braces a required argument's metavar: {RUN_ID}.
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


def plain_arguments(*apps: typer.Typer) -> None:
    """Every command of `apps` (and of their sub-apps) built as PlainArgumentsCommand."""
    for app in apps:
        for info in app.registered_commands:
            if info.cls in (None, TyperCommand):  # Typer's default; a command's own is kept
                info.cls = PlainArgumentsCommand
        plain_arguments(*(group.typer_instance for group in app.registered_groups))
