"""`jepardy data fetch`: the challenge's FineWeb shards and tokenizer, from its Hugging Face
dataset repo (or a local copy of it), into the challenge's local layout.

The hub repo (`willdepueoai/parameter-golf`, the challenge's `data/cached_challenge_fineweb.py`)
holds under `datasets/`: `manifest.json`, `datasets/fineweb10B_<variant>/fineweb_{train,val}_
NNNNNN.bin` and `tokenizers/...`. The manifest lists each dataset (`name`, `tokenizer_name`,
`stats.files_train`, `stats.files_val`) and each tokenizer (`name`, and `model_path`,
`vocab_path` or `path`). Locally (`out`, by default `layout.DATA_ROOT`, `data/`, the folder
experiments/*.toml read from):

    out/manifest.json
    out/datasets/fineweb10B_sp1024/fineweb_{val,train}_NNNNNN.bin
    out/tokenizers/fineweb_1024_bpe.model (+ .vocab)

Every validation shard and the first `train_shards` training shards are fetched. A file
already present is kept when it checks out (a shard's header agrees with its size); the hub
client resumes a partial download from its cache. Each file is checked after it arrives: its
size against the source's, a shard's header against its size; a bad file is deleted and
named. Without network access the fetch stops with one line saying so.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jepardy.data.layout import dataset_name
from jepardy.data.shards import ShardError, read_header
from jepardy.errors import UserError

HUB_REPO = "willdepueoai/parameter-golf"
REMOTE_ROOT = "datasets"  # the export's folder inside the hub repo
MANIFEST = "manifest.json"
_PATHS_PER_REQUEST = 100


class FetchObserver(Protocol):
    """Progress of a fetch: `planned` once, then `started`/`finished` per file."""

    def planned(self, files: int, total_bytes: int) -> None: ...

    def started(self, name: str, size: int) -> None: ...

    def finished(self, name: str, size: int) -> None: ...


class Source(Protocol):
    """Where files come from. Paths are relative to the repo root (`datasets/...`)."""

    description: str

    def sizes(self, paths: Sequence[str]) -> dict[str, int]:
        """Size in bytes of each path; a path the source lacks is a UserError."""
        ...

    def get(self, path: str, dest: Path) -> None:
        """Put the file at `dest` (written whole, or not at all)."""
        ...


@dataclass(frozen=True)
class RemoteFile:
    remote: str  # relative to the repo root
    local: Path
    is_shard: bool


@dataclass
class FetchResult:
    dataset: Path
    tokenizer: Path | None
    fetched: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    fetched_bytes: int = 0


def fetch(
    variant: str,
    train_shards: int,
    out: Path,
    source: Source,
    observer: FetchObserver | None = None,
) -> FetchResult:
    """Fetch a variant's validation shards, its first `train_shards` training shards and its
    tokenizer into `out` (module docstring). Raises UserError (one line) for a bad request,
    an unreachable source and any file that fails its checks."""
    name = dataset_name(variant)
    if train_shards < 0:
        raise UserError(f"--train-shards: {train_shards} is negative; expected 0 or more")
    manifest = _manifest(source, out)
    dataset, tokenizer = _entries(manifest, name, source)
    stats = dataset.get("stats") or {}
    available, val_shards = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if train_shards > available:
        raise UserError(
            f"--train-shards: {train_shards} is more than the {available} training shards of "
            f"{name} in {source.description}"
        )
    files = _files(name, val_shards, train_shards, tokenizer, out)
    missing = [f for f in files if not _intact(f)]
    result = FetchResult(dataset=out / "datasets" / name, tokenizer=_tokenizer_path(files))
    result.kept = [f.local for f in files if f not in missing]
    sizes = source.sizes([f.remote for f in missing]) if missing else {}
    if observer is not None:
        observer.planned(len(missing), sum(sizes.values()))
    for file in missing:
        size = sizes[file.remote]
        if observer is not None:
            observer.started(file.remote, size)
        source.get(file.remote, file.local)
        _check(file, size)
        result.fetched.append(file.local)
        result.fetched_bytes += size
        if observer is not None:
            observer.finished(file.remote, size)
    return result


# --- sources ---------------------------------------------------------------------------------


class DirSource:
    """A local folder laid out like the hub repo (`DIR/datasets/manifest.json`, ...)."""

    def __init__(self, root: Path) -> None:
        if not (root / REMOTE_ROOT / MANIFEST).is_file():
            raise UserError(
                f"--source {root}: no {REMOTE_ROOT}/{MANIFEST}; expected a folder laid out "
                f"like the hub repo {HUB_REPO}"
            )
        self.root = root
        self.description = str(root)

    def sizes(self, paths: Sequence[str]) -> dict[str, int]:
        sizes = {}
        for path in paths:
            file = self.root / path
            if not file.is_file():
                raise UserError(f"--source {self.root}: {path} not found")
            sizes[path] = file.stat().st_size
        return sizes

    def get(self, path: str, dest: Path) -> None:
        _place(self.root / path, dest, link=False)


class HubSource:
    """The Hugging Face dataset repo, through huggingface_hub (its cache resumes partial
    downloads). `endpoint` None means the library's default (`HF_ENDPOINT` or the hub)."""

    def __init__(self, repo: str = HUB_REPO, revision: str | None = None) -> None:
        self.repo = repo
        self.revision = revision
        self.description = f"the Hugging Face dataset {repo}"

    def sizes(self, paths: Sequence[str]) -> dict[str, int]:
        from huggingface_hub import HfApi

        api = HfApi()
        sizes: dict[str, int] = {}
        for start in range(0, len(paths), _PATHS_PER_REQUEST):
            chunk = list(paths[start : start + _PATHS_PER_REQUEST])
            with _hub_errors(self.repo):
                infos = api.get_paths_info(
                    self.repo, chunk, repo_type="dataset", revision=self.revision
                )
            sizes |= {info.path: int(getattr(info, "size", 0) or 0) for info in infos}
        for path in paths:
            if path not in sizes:
                raise UserError(f"{self.repo}: {path} not found on the hub")
        return sizes

    def get(self, path: str, dest: Path) -> None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # the command's own bar counts files and bytes
        folder, _, name = path.rpartition("/")
        with _hub_errors(self.repo):
            cached = hf_hub_download(
                self.repo,
                name,
                subfolder=folder or None,
                repo_type="dataset",
                revision=self.revision,
            )
        # The cache holds the file (often as a symlink to a blob): link it, so a 200 MB shard
        # is not stored twice; copy across file systems.
        _place(Path(cached).resolve(strict=True), dest, link=True)


@contextmanager
def _hub_errors(repo: str) -> Iterator[None]:
    """Hub failures as one line: offline (no connection, HF_HUB_OFFLINE), missing files,
    other HTTP errors. Anything else keeps its traceback."""
    from huggingface_hub import errors

    try:
        yield
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise UserError(f"{repo}: not found on the hub ({_first_line(exc)})") from exc
    except errors.EntryNotFoundError as exc:
        if not isinstance(exc, errors.LocalEntryNotFoundError):
            raise UserError(f"{repo}: {_first_line(exc)}") from exc
        raise _offline(repo) from exc
    except errors.HfHubHTTPError as exc:
        raise UserError(f"{repo}: hub error: {_first_line(exc)}") from exc
    except Exception as exc:
        if _is_offline(exc):
            raise _offline(repo) from exc
        raise


def _offline(repo: str) -> UserError:
    return UserError(
        f"data fetch: cannot reach the Hugging Face hub for {repo} (offline); "
        "connect, or pass --source DIR with a copy laid out like the hub repo"
    )


def _is_offline(exc: BaseException) -> bool:
    """No connection: an OSError (huggingface_hub's offline and cache-miss errors are ones)
    or an HTTP transport error of its client library (httpx, requests)."""
    names = {"TransportError", "ConnectError", "ConnectionError", "TimeoutException", "Timeout"}
    return isinstance(exc, OSError) or any(k.__name__ in names for k in type(exc).__mro__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- files -----------------------------------------------------------------------------------


def _manifest(source: Source, out: Path) -> dict[str, Any]:
    """The source's manifest, saved as `out/manifest.json` (always fetched again: it is small
    and says what the source holds now)."""
    dest = out / MANIFEST
    remote = f"{REMOTE_ROOT}/{MANIFEST}"
    source.sizes([remote])  # one quick request: offline fails here, at once
    source.get(remote, dest)
    try:
        manifest = json.loads(dest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{dest}: not a JSON manifest ({err})") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{dest}: not a JSON object; expected the export's manifest")
    return manifest


def _entries(
    manifest: dict[str, Any], name: str, source: Source
) -> tuple[dict[str, Any], dict[str, Any]]:
    datasets = [d for d in manifest.get("datasets", []) if isinstance(d, dict)]
    dataset = next((d for d in datasets if d.get("name") == name), None)
    if dataset is None:
        known = ", ".join(str(d.get("name")) for d in datasets) or "none"
        raise UserError(f"--variant: {name} is not in {source.description}; it has {known}")
    tokenizers = [t for t in manifest.get("tokenizers", []) if isinstance(t, dict)]
    tokenizer = next((t for t in tokenizers if t.get("name") == dataset.get("tokenizer_name")), {})
    return dataset, tokenizer


def _files(
    name: str, val_shards: int, train_shards: int, tokenizer: dict[str, Any], out: Path
) -> list[RemoteFile]:
    files = []
    for split, count in (("val", val_shards), ("train", train_shards)):
        for i in range(count):
            relative = f"datasets/{name}/fineweb_{split}_{i:06d}.bin"
            files.append(RemoteFile(f"{REMOTE_ROOT}/{relative}", out / relative, True))
    for key in ("model_path", "vocab_path", "path"):
        value = tokenizer.get(key)
        if isinstance(value, str) and value:
            files.append(RemoteFile(f"{REMOTE_ROOT}/{value}", out / value, False))
    return files


def _tokenizer_path(files: list[RemoteFile]) -> Path | None:
    return next((f.local for f in files if not f.is_shard), None)


def _intact(file: RemoteFile) -> bool:
    """Present and whole: a shard whose header agrees with its size, any other file present
    and not empty."""
    if not file.local.is_file():
        return False
    if not file.is_shard:
        return file.local.stat().st_size > 0
    try:
        read_header(file.local)
    except ShardError:
        return False
    return True


def _check(file: RemoteFile, size: int) -> None:
    """The file as fetched has the source's size and, for a shard, a consistent header;
    otherwise it is deleted and named."""
    found = file.local.stat().st_size
    problem = f"size {found} bytes, the source says {size}" if found != size else None
    if problem is None and file.is_shard:
        try:
            read_header(file.local)
        except ShardError as err:
            problem = str(err).removeprefix(f"{file.local}: ")
    if problem is not None:
        file.local.unlink(missing_ok=True)
        raise UserError(f"{file.local}: {problem}; deleted, run the fetch again")


def _place(source: Path, dest: Path, link: bool) -> None:
    """Put `source` at `dest` atomically: a hard link when `link` (falling back to a copy),
    else a copy, through a temporary sibling renamed over `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        if link:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
