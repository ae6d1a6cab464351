"""Where the challenge's data lives on disk, declared once for `data fetch`, `data check`,
the sweep's path checks and the specs in experiments/.

The layout is the challenge's own (openai/parameter-golf, `data/cached_challenge_fineweb.py`):
under a root, `datasets/fineweb10B_<variant>/fineweb_{train,val}_NNNNNN.bin` and
`tokenizers/` (`fineweb_1024_bpe.model` for sp1024; byte260 needs no model).
"""

from __future__ import annotations

import re
from pathlib import Path

from jepardy.errors import UserError

# The default root: `jepardy data fetch` writes here and experiments/*.toml read from here.
DATA_ROOT = Path("data")
_VARIANT = re.compile(r"sp\d+|byte260")
_DATASET = re.compile(r"fineweb10B_(sp\d+|byte260)")
_TOKENIZER = re.compile(r"fineweb_(\d+)_bpe\.(?:model|vocab)")


def dataset_name(variant: str) -> str:
    """`sp1024` -> `fineweb10B_sp1024`; anything but sp<N> or byte260 is a UserError."""
    if not _VARIANT.fullmatch(variant):
        raise UserError(
            f"--variant: {variant!r} is not a variant; allowed: sp<N> (sp1024), byte260"
        )
    return f"fineweb10B_{variant}"


def dataset_dir(variant: str, root: Path = DATA_ROOT) -> Path:
    """The folder `jepardy data fetch --variant VARIANT --out ROOT` fills."""
    return root / "datasets" / dataset_name(variant)


def fetched_variant(path: str | Path) -> str | None:
    """The variant whose fetch makes `path` (a dataset folder, a shard in one, or a
    `fineweb_<N>_bpe` tokenizer), or None when `path` is not in the challenge's layout."""
    tokenizer = _TOKENIZER.fullmatch(Path(path).name)
    if tokenizer:
        return f"sp{tokenizer.group(1)}"
    for part in reversed(Path(path).parts):
        found = _DATASET.fullmatch(part)
        if found:
            return found.group(1)
    return None
