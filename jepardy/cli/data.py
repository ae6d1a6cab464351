"""`jepardy data build|fetch|check`: the token shards a sweep trains on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jepardy.cli.output import console, tagged
from jepardy.data.layout import DATA_ROOT

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from jepardy.data.check import DatasetCheck

app = typer.Typer(help="Build, fetch and check token shards.", no_args_is_help=True)


@app.command("build")
def data_build(
    root: Annotated[Path, typer.Option(help="Where to write the embedded corpus.")] = Path(
        "data/embedded"
    ),
    force: Annotated[bool, typer.Option(help="Rebuild even if intact.")] = False,
) -> None:
    """Build the embedded corpus (CPython's help texts).

    Writes sp1024 and byte260 shards and the tokenizer.
    """
    from jepardy.data.corpus import build_embedded

    corpus = build_embedded(root, force=force)
    verb = "built" if corpus.rebuilt else "up to date"
    console.print(
        f"{verb}: {corpus.root}  sp1024 train/val tokens {corpus.sp1024_tokens['train']:,}/"
        f"{corpus.sp1024_tokens['val']:,}  byte260 {corpus.byte260_tokens['train']:,}/"
        f"{corpus.byte260_tokens['val']:,}"
    )


@app.command("fetch")
def data_fetch(
    variant: Annotated[str, typer.Option(help="sp1024, another sp<N>, or byte260.")] = "sp1024",
    train_shards: Annotated[
        int, typer.Option(help="Training shards to fetch (every validation shard is fetched).")
    ] = 80,
    out: Annotated[Path, typer.Option(help="Where the data goes.")] = DATA_ROOT,
    source: Annotated[
        Path | None,
        typer.Option(help="A local folder laid out like the hub repo, instead of the hub."),
    ] = None,
    repo: Annotated[str, typer.Option(help="The Hugging Face dataset repo.")] = (
        "willdepueoai/parameter-golf"
    ),
    revision: Annotated[str | None, typer.Option(help="A branch, tag or commit.")] = None,
) -> None:
    """Download the challenge's FineWeb shards and tokenizer.

    Resumable; every file's size is checked.
    """
    # rich.progress is imported here, not with the CLI: every command would pay for it.
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from jepardy.data.fetch import DirSource, HubSource, fetch

    origin = DirSource(source) if source is not None else HubSource(repo, revision)
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        result = fetch(variant, train_shards, out, origin, RichFetchObserver(progress))
    console.print(
        f"{result.dataset}: {len(result.fetched)} files fetched "
        f"({result.fetched_bytes / 1e6:,.1f} MB), {len(result.kept)} already here; "
        f"tokenizer {result.tokenizer}",
        highlight=False,
        soft_wrap=True,
    )


class RichFetchObserver:
    """One bar over the bytes to fetch, naming the file under way."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None  # no bar before the fetch knows what it fetches

    def planned(self, files: int, total_bytes: int) -> None:
        self.task = self.progress.add_task(f"{files} files", total=total_bytes)

    def started(self, name: str, size: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=name.rsplit("/", 1)[-1])

    def finished(self, name: str, size: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=size)


@app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="A dataset folder, or a data root with datasets/.")],
    vocab_size: Annotated[
        int | None, typer.Option(help="Vocabulary size (default: tokenizer, manifest, name).")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="SentencePiece model whose vocabulary the tokens use.")
    ] = None,
) -> None:
    """Verify shard headers, sizes and token ids.

    Every token id must be in the vocabulary.
    """
    from jepardy.data.check import check_data

    checks = check_data(path, vocab_size, tokenizer)
    for check in checks:
        if check.splits:
            _print_splits(check)
    problems = [p for check in checks for p in check.problems]
    for problem in problems:
        console.print(tagged("problem:", "red", problem), soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print("ok: headers, sizes and token ids all check out", highlight=False)


def _print_splits(check: DatasetCheck) -> None:
    """The dataset's path whole on a line of its own, then a row per split: at any width
    nothing is cut."""
    from jepardy.analysis import fit

    shown = f"{check.path}: vocab {check.vocab_size} ({check.vocab_source})"
    console.print(shown, highlight=False, soft_wrap=True)
    splits = check.splits.values()
    cells = {
        "split": list(check.splits),
        "files": [f"{found.files:,}" for found in splits],
        "tokens": [f"{found.tokens:,}" for found in splits],
        "documents": [f"{found.documents:,}" for found in splits],
        "max id": [str(found.max_token) for found in splits],
    }
    grid = fit.Grid("", cells, frozenset(list(cells)[1:]))
    console.print(fit.rich_table(grid, list(cells)))
