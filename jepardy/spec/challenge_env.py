"""The challenge's environment-variable convention, in one explicit table.

Challenge trainers (`train_gpt.py` and its forks) read their settings from upper-case
environment variables at import (`SEED`, `MAX_WALLCLOCK_SECONDS`, ...) and print them back,
lower-cased, in their logs (`seed:1337`, `max_wallclock_seconds: 600.0`). jepardy names the
same settings with its own param names (`seed`, `wallclock_s`). `PARAMS` is the one mapping
between the two; it serves three readers:

- a `kind = "script"` spec: a run's params become the script's environment (`script_env`);
  a param not in the table must be written as the variable itself, in upper case;
- ingest: hyperparameters printed in a log get jepardy's names (`jepardy_name`);
- results tables: a column named after either form maps to the jepardy param.

Values follow the challenge scripts' parsing: ints and floats as decimal text, booleans as
"1"/"0" (the scripts read `bool(int(os.environ[...]))`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Scalar = bool | int | float | str


@dataclass(frozen=True)
class EnvParam:
    """A jepardy param, the challenge variable that carries it, and its type."""

    name: str
    env: str
    type: str  # "int" | "float" | "bool" | "str"
    is_path: bool = False  # a relative value is resolved against the orchestrator's cwd


PARAMS: tuple[EnvParam, ...] = (
    EnvParam("seed", "SEED", "int"),
    EnvParam("jepa_weight", "JEPA_LOSS_WEIGHT", "float"),
    EnvParam("jepa_patch_size", "JEPA_PATCH_SIZE", "int"),
    EnvParam("wallclock_s", "MAX_WALLCLOCK_SECONDS", "float"),
    EnvParam("iterations", "ITERATIONS", "int"),
    EnvParam("warmup_steps", "WARMUP_STEPS", "int"),
    EnvParam("warmdown_frac", "WARMDOWN_FRAC", "float"),
    EnvParam("train_batch_tokens", "TRAIN_BATCH_TOKENS", "int"),
    EnvParam("val_batch_tokens", "VAL_BATCH_SIZE", "int"),  # tokens, despite its name
    EnvParam("seq_len", "TRAIN_SEQ_LEN", "int"),
    EnvParam("vocab_size", "VOCAB_SIZE", "int"),
    EnvParam("n_layers", "NUM_LAYERS", "int"),
    EnvParam("d_model", "MODEL_DIM", "int"),
    EnvParam("n_heads", "NUM_HEADS", "int"),
    EnvParam("n_kv_heads", "NUM_KV_HEADS", "int"),
    EnvParam("mlp_mult", "MLP_MULT", "int"),
    EnvParam("rope_base", "ROPE_BASE", "float"),
    EnvParam("logit_softcap", "LOGIT_SOFTCAP", "float"),
    EnvParam("embed_lr", "EMBED_LR", "float"),
    EnvParam("beta1", "BETA1", "float"),
    EnvParam("beta2", "BETA2", "float"),
    EnvParam("grad_clip", "GRAD_CLIP_NORM", "float"),
    EnvParam("ema", "EMA_ENABLED", "bool"),
    EnvParam("ema_decay", "EMA_DECAY", "float"),
    EnvParam("val_every", "VAL_LOSS_EVERY", "int"),
    EnvParam("log_every", "TRAIN_LOG_EVERY", "int"),
    EnvParam("data_dir", "DATA_PATH", "str", is_path=True),
    EnvParam("tokenizer_path", "TOKENIZER_PATH", "str", is_path=True),
)
BY_NAME = {p.name: p for p in PARAMS}
BY_ENV = {p.env: p for p in PARAMS}
# Set by the launcher for every script run, never by a spec.
RESERVED_ENV = ("RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK")
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Upper-case pass-through variables whose relative values are paths (DATA_PATH, VAL_DIR, ...).
_PATH_ENV = re.compile(r".*_(PATH|DIR|FILE|FILES)")


def script_param_type(name: str) -> str:
    """The type of a `kind = "script"` spec param: the table's type for a jepardy name,
    "any" (the value's own type) for an upper-case variable.

    Raises ValueError with what is allowed for anything else: `seed` and `SEED` (set by
    `sweep.seeds`), a variable that has a jepardy name in the table (use that name, so one
    setting has one spelling), a reserved variable, or a lower-case name not in the table.
    """
    if name in ("seed", "SEED"):
        raise ValueError("seed is set by sweep.seeds; not allowed as a param")
    if name in BY_NAME:
        return BY_NAME[name].type
    if name in BY_ENV:
        raise ValueError(f"{name} is the variable of jepardy param {BY_ENV[name].name}; use that")
    if name in RESERVED_ENV:
        raise ValueError(f"{name} is set by the launcher; not allowed as a param")
    if ENV_NAME.fullmatch(name):
        return "any"
    known = ", ".join(sorted(BY_NAME))
    raise ValueError(
        "not a mapped param; use one of "
        f"{known}, or the script's environment variable in upper case"
    )


def env_value(value: Scalar) -> str:
    """A param value as challenge scripts parse it: bools as 1/0, floats by repr."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def script_env(params: dict[str, Any], cwd: Path) -> dict[str, str]:
    """The environment variables that carry a script run's params (seed included).

    Jepardy names go through `PARAMS`; upper-case names pass through. Relative path values
    (table params marked as paths, and variables named `*_PATH`, `*_DIR`, `*_FILE(S)`) are
    made absolute against `cwd`, because the script runs inside its run directory.
    """
    env: dict[str, str] = {}
    for name, value in params.items():
        spec = BY_NAME.get(name)
        key = spec.env if spec else name
        text = env_value(value)
        is_path = spec.is_path if spec else bool(_PATH_ENV.fullmatch(name))
        if is_path and text and not Path(text).is_absolute():
            text = str(cwd / text)
        env[key] = text
    return env


def jepardy_name(printed: str) -> str | None:
    """The jepardy param a printed hyperparameter (any case, `max_wallclock_seconds` or
    `MAX_WALLCLOCK_SECONDS` or `wallclock_s`) stands for, or None when it has none."""
    if printed in BY_NAME:
        return printed
    spec = BY_ENV.get(printed.upper())
    return spec.name if spec else None


def convert(value: Scalar, type_name: str) -> Scalar | None:
    """`value` as the table type `type_name` when that loses nothing, else None.

    Logs print `mlp_mult: 4.0` for an int setting and `tie_embeddings: True` for a bool;
    an int 1/0 counts as a bool, an integral float as an int, an int as a float.
    """
    if type_name == "str":
        return value if isinstance(value, str) else None
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if type_name == "int":
        return int(value) if float(value).is_integer() else None
    return float(value)
