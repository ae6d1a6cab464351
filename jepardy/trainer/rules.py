"""The trainer's rules: the values a config may take, one field at a time (choices, ranges,
finite floats, 64-bit ints) and between fields (heads that split d_model, a batch that splits
into ranks, micro-batches and whole sequences, ...).

One set of rules, applied by the trainer at start-up (`TrainConfig.validate`) and by the
spec layer to every run at plan time (`config.check_params`), so the two never disagree.
Types are checked before (`config.coerce_value`); these are the values the trainer's code
can run with. Like config.py, this module imports nothing heavy (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from jepardy.errors import clipped_repr
from jepardy.trainer.presets import PRESETS

if TYPE_CHECKING:
    from jepardy.trainer.config import TrainConfig

# The allowed values of the fields that name a choice (also listed by `config.schema()`).
CHOICES: dict[str, tuple[str, ...]] = {
    "preset": ("", *PRESETS),
    "device": ("auto", "cpu", "cuda"),
    "jepa_target": ("online", "ema"),
    "optimizer": ("adamw", "muon"),
    "matrix_init": ("normal", "uniform", "orthogonal"),
    "mlp_activation": ("leaky_relu2", "relu2"),
}


# Ints pass through torch, numpy and the store's BIGINT columns.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Bounds:
    """A numeric range of one field; `high` None is unbounded. Ends are included unless
    `low_open` / `high_open`."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return above
        return above and (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


_AT_LEAST_0, _AT_LEAST_1 = Bounds(0), Bounds(1)
_POSITIVE = Bounds(0, low_open=True)
_FRACTION = Bounds(0, 1)
_DECAY = Bounds(0, 1, high_open=True)  # a momentum or EMA decay: 1 would never move

# Every int and float field's range (tests/test_validate.py checks none is missing).
BOUNDS: dict[str, Bounds] = {
    # data.py, eval.py: token counts and sizes; 0 means "all" / "whole batch" where allowed.
    "vocab_size": Bounds(2),
    "seq_len": _AT_LEAST_1,
    "train_batch_tokens": _AT_LEAST_1,
    "micro_batch_tokens": _AT_LEAST_0,
    "val_batch_tokens": _AT_LEAST_1,
    "val_max_tokens": _AT_LEAST_0,
    # model.py, features.py: layer counts and widths are tensor sizes.
    "n_layers": _AT_LEAST_1,
    "d_model": _AT_LEAST_1,
    "n_heads": _AT_LEAST_1,
    "n_kv_heads": _AT_LEAST_1,
    "mlp_mult": _AT_LEAST_1,
    "rope_base": _POSITIVE,  # model.py Rotary: base ** (i / dims) is NaN for base <= 0
    "rope_train_seq_len": _AT_LEAST_0,  # 0 = never rescale the base
    "logit_softcap": _AT_LEAST_0,  # 0 = no cap
    "init_std": _AT_LEAST_0,  # torch.nn.init.normal_ refuses std < 0
    "embed_init_std": _AT_LEAST_0,  # 0 = init_std
    "qk_gain": _AT_LEAST_0,  # 0 = no gain
    "rope_dims": _AT_LEAST_0,
    "bigram_hash_buckets": _AT_LEAST_0,
    "bigram_dim": _AT_LEAST_1,
    "xsa_last_n": _AT_LEAST_0,
    "value_embed_last_n": _AT_LEAST_0,
    "value_embed_dim": _AT_LEAST_1,
    # optim.py, muon.py: a negative rate or decay climbs the loss (a run "done" at lr -0.5);
    # torch.optim.AdamW refuses betas outside [0, 1).
    "lr": _AT_LEAST_0,
    "embed_lr": _AT_LEAST_0,
    "scalar_lr": _AT_LEAST_0,  # 0 = lr
    "weight_decay": _AT_LEAST_0,
    "adam_weight_decay": _AT_LEAST_0,
    "beta1": _DECAY,
    "beta2": _DECAY,
    "muon_momentum": _DECAY,
    "muon_momentum_warmup_start": _DECAY,
    "muon_momentum_warmup_steps": _AT_LEAST_0,
    "muon_ns_steps": _AT_LEAST_1,
    "grad_clip": _AT_LEAST_0,  # 0 = off
    "iterations": _AT_LEAST_1,
    "wallclock_s": _AT_LEAST_0,  # 0 = no budget
    "warmup_steps": _AT_LEAST_0,
    "warmdown_frac": _FRACTION,  # optim.lr_multiplier: a fraction of the run
    # jepa.py
    "jepa_weight": _AT_LEAST_0,  # 0 = no predictor
    "jepa_patch_size": _AT_LEAST_1,
    "jepa_var_weight": _AT_LEAST_0,
    "jepa_std_target": _AT_LEAST_0,
    "jepa_target_ema_decay": _DECAY,
    "jepa_lr": _AT_LEAST_0,
    "ema_decay": _DECAY,
    # train.py: `step % log_every` on every step; `val_every` 0 = at the end only.
    "val_every": _AT_LEAST_0,
    "log_every": _AT_LEAST_1,
    # export.py: qmax = 2^(bits-1) - 1 must be > 0 and the codes are int8;
    # zstandard refuses levels above 22, libzstd's lowest is ZSTD_minCLevel() = -2^17.
    "quant_bits": Bounds(2, 8),
    "zstd_level": Bounds(-(2**17), 22),
    "export_target_bytes": _AT_LEAST_0,  # budget.py; 0 = the cap minus the code bytes
    "eval_stride": _AT_LEAST_0,  # 0 = off
    "compile_warmup_steps": _AT_LEAST_0,
    "seed": _AT_LEAST_0,  # as sweep.seeds (spec/parse.py)
}


@dataclass(frozen=True)
class ConfigProblem:
    """Why the trainer cannot run a config: the field to change, its value, and the rule."""

    field: str
    value: Any
    why: str

    def __str__(self) -> str:
        return f"{self.field} = {shown(self.value)}: {self.why}"


def shown(value: Any) -> str:
    """A value as a message shows it: TOML's true/false, a repr cut short otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return clipped_repr(value)


@dataclass(frozen=True)
class _CrossRule:
    """A rule between fields: `holds(config, world_size)`; `why` is formatted with the config
    `c`, `head_dim` and `world`. Checked only once every field is in its own range."""

    field: str
    holds: Callable[[TrainConfig, int], bool]
    why: str


def _batch_splits(c: TrainConfig, world: int) -> bool:
    # data.micro_steps: the global batch splits into `world` ranks x micro-batches x whole
    # sequences. The spec layer checks with its nproc (a multi-node world is a multiple).
    per_rank, rest = divmod(c.train_batch_tokens, world)
    micro = c.micro_batch_tokens or per_rank
    return rest == 0 and micro > 0 and per_rank % micro == 0 and micro % c.seq_len == 0


_CROSS_RULES = (
    # model.py Attention: the heads split d_model evenly; query heads share kv heads evenly
    # (grouped-query attention); RoPE rotates pairs of a head's dims.
    _CrossRule(
        "n_heads", lambda c, w: c.d_model % c.n_heads == 0, "must divide d_model = {c.d_model}"
    ),
    _CrossRule(
        "n_kv_heads",
        lambda c, w: c.n_heads % c.n_kv_heads == 0,
        "must divide n_heads = {c.n_heads}",
    ),
    _CrossRule(
        "d_model",
        lambda c, w: (c.d_model // c.n_heads) % 2 == 0,
        "d_model / n_heads = {head_dim} must be even (RoPE rotates pairs)",
    ),
    _CrossRule(
        "rope_dims",
        lambda c, w: c.rope_dims % 2 == 0 and c.rope_dims <= c.d_model // c.n_heads,
        "must be 0 or even and <= head_dim = {head_dim}",
    ),
    _CrossRule(
        "xsa_last_n", lambda c, w: c.xsa_last_n <= c.n_layers, "must be <= n_layers = {c.n_layers}"
    ),
    _CrossRule(
        "value_embed_last_n",
        lambda c, w: c.value_embed_last_n <= c.n_layers,
        "must be <= n_layers = {c.n_layers}",
    ),
    # features.bigram_buckets: pairs hash into buckets - 1; the last bucket is position 0's.
    _CrossRule(
        "bigram_hash_buckets", lambda c, w: c.bigram_hash_buckets != 1, "must be 0 (off) or >= 2"
    ),
    # jepa.py: a sequence is cut into whole patches, and each patch predicts the next one.
    _CrossRule(
        "seq_len",
        lambda c, w: c.jepa_weight == 0 or c.seq_len % c.jepa_patch_size == 0,
        "must be a multiple of jepa_patch_size = {c.jepa_patch_size} when jepa_weight > 0",
    ),
    _CrossRule(
        "seq_len",
        lambda c, w: c.jepa_weight == 0 or c.seq_len >= 2 * c.jepa_patch_size,
        "must hold 2 patches of jepa_patch_size = {c.jepa_patch_size} when jepa_weight > 0",
    ),
    _CrossRule(
        "micro_batch_tokens",
        lambda c, w: c.micro_batch_tokens % c.seq_len == 0,
        "must be 0 or a multiple of seq_len = {c.seq_len}",
    ),
    _CrossRule(
        "train_batch_tokens",
        _batch_splits,
        "must split into {world} rank(s) x micro_batch_tokens = {c.micro_batch_tokens} "
        "(0: one micro-batch) x whole sequences of seq_len = {c.seq_len}",
    ),
    # eval.py: a sliding window advances by at most its own length.
    _CrossRule(
        "eval_stride", lambda c, w: c.eval_stride <= c.seq_len, "must be <= seq_len = {c.seq_len}"
    ),
)


def _field_problem(name: str, value: Any) -> ConfigProblem | None:
    if isinstance(value, float) and not math.isfinite(value):
        return ConfigProblem(name, value, "must be finite")
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        return ConfigProblem(name, value, "must fit in a 64-bit int")
    if name in CHOICES and value not in CHOICES[name]:
        return ConfigProblem(name, value, f"must be one of {', '.join(map(repr, CHOICES[name]))}")
    bounds = BOUNDS.get(name)
    if bounds is not None and not bounds.holds(value):
        return ConfigProblem(name, value, f"must be {bounds}")
    return None


def check_config(config: TrainConfig, world_size: int = 1) -> ConfigProblem | None:
    """The first rule `config` breaks (per field in field order, then between fields), or
    None when the trainer can run it on `world_size` ranks."""
    for f in fields(config):
        if problem := _field_problem(f.name, getattr(config, f.name)):
            return problem
    for rule in _CROSS_RULES:
        if not rule.holds(config, world_size):
            head_dim = config.d_model // config.n_heads
            why = rule.why.format(c=config, head_dim=head_dim, world=world_size)
            return ConfigProblem(rule.field, getattr(config, rule.field), why)
    return None
