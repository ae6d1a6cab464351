"""The trainer's configuration: one typed dataclass, parsed once, unknown keys refused.

This module imports nothing heavy (no torch), so the orchestrator can ask for the schema
through the command line without paying for a torch import:

    python -m jepardy.trainer.config      # prints {"field": {"type": ..., "default": ...}}

(with "choices" for the fields that name one). A spec may name a preset (presets.py): its
fields are applied first, the spec's own params over them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from jepardy.errors import UserError, clipped_repr
from jepardy.trainer.presets import PRESETS

# The challenge's artifact cap: code bytes + compressed model bytes, decimal bytes.
ARTIFACT_CAP_BYTES = 16_000_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Units are in the names where they matter.

    Every model feature and optimizer choice beyond the plain GPT defaults to off, so the
    tiny defaults below (and every spec written before a field existed) mean what they did.
    """

    # --- preset: "" (these defaults) or a name in presets.PRESETS, applied before the
    # explicit params, so any field of a preset can be overridden ---
    preset: str = ""

    # --- data ---
    data_dir: str = "data/embedded/datasets/embedded_sp1024"  # holds fineweb_{train,val}_*.bin
    # SentencePiece model for byte accounting; "" means byte-level data (byte260 vocab).
    tokenizer_path: str = "data/embedded/tokenizers/embedded_1024_bpe.model"
    vocab_size: int = 1024
    seq_len: int = 128
    train_batch_tokens: int = 4096  # global tokens per optimizer step, over all ranks
    # Gradient accumulation: tokens per rank per micro-step (0 = the whole per-rank batch at
    # once). Micro-steps = train_batch_tokens / (ranks * micro_batch_tokens); the global batch
    # and the tokens it holds do not depend on either.
    micro_batch_tokens: int = 0
    val_batch_tokens: int = 16384  # tokens per evaluation forward pass, over all ranks
    val_max_tokens: int = 0  # evaluate on at most this many val tokens; 0 = all of them

    # --- model (GPT with tied embeddings) ---
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2  # grouped-query attention: n_heads must be a multiple
    mlp_mult: int = 2
    rope_base: float = 10000.0
    # The context the RoPE base is set for: a longer sequence (training or evaluation)
    # rescales the base to rope_base * (seq_len / this)^(d / (d - 2)), d the rotated dims, as
    # the 2026-03-23 record's Rotary does (its train_seq_len 1024); 0 = never rescale.
    rope_train_seq_len: int = 0
    logit_softcap: float = 30.0  # the challenge's baseline uses 30
    init_std: float = 0.02
    embed_init_std: float = 0.0  # token embedding init std; 0 = init_std
    # Init of the blocks' q/k/v/fc weights (their output layers always start at zero):
    # "normal" (std init_std) | "uniform" (torch's nn.Linear default, the challenge baseline's)
    # | "orthogonal" (gain 1, the leader stack's).
    matrix_init: str = "normal"
    mlp_activation: str = "leaky_relu2"  # "leaky_relu2" (LeakyReLU(0.5)^2) | "relu2"

    # --- leader-stack features (features.py, model.py); each off by default ---
    embed_norm: bool = False  # RMS-normalise the input embedding before the first block
    qk_gain: float = 0.0  # learnable per-head query gain initialised to this; 0 = none
    resid_mix: bool = False  # each block mixes its input with the first block's input x0
    unet_skips: bool = False  # second-half blocks add weighted first-half outputs (mirrored)
    ln_scale: bool = False  # scale each block's normed branch inputs by 1/sqrt(layer + 1)
    rope_dims: int = 0  # partial RoPE: rotate only the first rope_dims of each head; 0 = all
    smear_gate: bool = False  # blend each position's input with its predecessor's (gated)
    bigram_hash_buckets: int = 0  # hashed (previous, current) token-pair embedding; 0 = off
    bigram_dim: int = 128  # width of the bigram table, projected to d_model
    xsa_last_n: int = 0  # exclusive self-attention (own value removed) in the last N blocks
    value_embed_last_n: int = 0  # value embeddings added to attention values, last N blocks
    value_embed_dim: int = 128  # width of the value-embedding table, projected to kv width

    # --- optimisation ---
    # "adamw": AdamW on every group. "muon": Muon on the blocks' matrices, Adam(W) on the
    # embeddings, vectors, gates and the JEPA predictor (see optim.py).
    optimizer: str = "adamw"
    lr: float = 3e-3  # the blocks' matrices (AdamW or Muon)
    embed_lr: float = 3e-3  # embedding tables (token, bigram, value embeddings)
    scalar_lr: float = 0.0  # vectors, gates and small projections; 0 = lr
    weight_decay: float = 0.0  # decoupled, on the blocks' matrices
    adam_weight_decay: float = 0.0  # decoupled, on the embedding and scalar groups
    beta1: float = 0.9
    beta2: float = 0.95
    muon_momentum: float = 0.95  # Nesterov momentum of Muon, after its warmup
    muon_momentum_warmup_start: float = 0.85  # ... rising linearly from this
    muon_momentum_warmup_steps: int = 500  # ... over this many steps; 0 = no warmup
    muon_ns_steps: int = 5  # Newton-Schulz iterations per Muon update
    grad_clip: float = 1.0  # on the model's own gradients; 0 disables
    # Under several ranks, clip each rank's own gradient before averaging them, where the
    # challenge's record and the study clip (their clip_grad_norm_ runs before their
    # all-reduce); false: clip the averaged gradient (DDP's overlap of communication with
    # backward kept). One rank: the same either way.
    grad_clip_before_average: bool = True
    iterations: int = 200  # step cap
    wallclock_s: float = 0.0  # training-time budget in seconds (eval excluded); 0 = none
    warmup_steps: int = 10
    # Fraction of the run (of the wallclock budget when one is set, else of `iterations`)
    # over which the learning rate decays linearly to 0 at the end.
    warmdown_frac: float = 0.3

    # --- JEPA auxiliary loss (see jepa.py) ---
    jepa_weight: float = 0.0  # 0 = no predictor at all
    jepa_patch_size: int = 8
    jepa_var_weight: float = 0.02
    jepa_std_target: float = 0.5
    jepa_target: str = "online"  # "online" (stop-grad embedding) | "ema" (EMA copy)
    jepa_target_ema_decay: float = 0.995
    jepa_lr: float = 3e-3

    # --- weight EMA, applied before evaluation and export ---
    ema: bool = False
    ema_decay: float = 0.997

    # --- evaluation and export ---
    val_every: int = 0  # evaluate every N steps during training; 0 = only at the end
    log_every: int = 10
    quant_bits: int = 6  # per-row symmetric quantization of large float tensors
    zstd_level: int = 19
    # Byte budget of the compressed model (budget.py picks the finest quantization that
    # fits it); 0 = the challenge's cap minus the code bytes of the run.
    export_target_bytes: int = 0
    # Sliding-window evaluation of the artifact: windows of seq_len advancing by this many
    # tokens, each target scored once with the longest context available; 0 = off.
    eval_stride: int = 0

    # --- speed (CUDA only; bf16 autocast is always on there) ---
    compile: bool = True  # torch.compile the model on CUDA; ignored (and logged) on CPU
    # Steps run before the clock starts to compile and warm the kernels, then undone (weights,
    # optimizer state and data stream restored), as the challenge's WARMUP_STEPS do.
    compile_warmup_steps: int = 0

    # --- run ---
    seed: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda"

    def validate(self, world_size: int = 1) -> None:
        """Raise UserError for values that are well-typed but meaningless (`check_config`,
        the rules the spec layer applies at plan time too)."""
        if problem := check_config(self, world_size):
            raise UserError(f"config: {problem}")


# The allowed values of the fields that name a choice (also listed by `schema()`).
CHOICES: dict[str, tuple[str, ...]] = {
    "preset": ("", *PRESETS),
    "device": ("auto", "cpu", "cuda"),
    "jepa_target": ("online", "ema"),
    "optimizer": ("adamw", "muon"),
    "matrix_init": ("normal", "uniform", "orthogonal"),
    "mlp_activation": ("leaky_relu2", "relu2"),
}

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}

# --- the trainer's rules ------------------------------------------------------------------
# One set of rules, applied by the trainer at start-up (`TrainConfig.validate`) and by the
# spec layer to every run at plan time (`check_params`), so the two never disagree. Types are
# checked before (`coerce_value`); these are the values the trainer's code can run with.

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


def check_params(params: Mapping[str, Any], world_size: int = 1) -> ConfigProblem | None:
    """`check_config` of the config that known, well-typed `params` resolve to, as
    `config_from_params` builds it: the preset's fields (an unknown preset is the problem),
    then the params over them, then the trainer's defaults."""
    preset = params.get("preset", "")
    if preset not in CHOICES["preset"]:
        return ConfigProblem("preset", preset, f"not a preset; known: {', '.join(PRESETS)}")
    return check_config(TrainConfig(**{**preset_params(preset), **params}), world_size)


def _field_type(f: dataclasses.Field) -> type:
    # `from __future__ import annotations` makes f.type a string; map it back.
    return {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]


def schema() -> dict[str, dict[str, Any]]:
    """Field name -> {"type": "int"|"float"|"bool"|"str", "default": value}, plus
    "choices" (the allowed values) for the fields that name a choice."""
    out: dict[str, dict[str, Any]] = {}
    for f in fields(TrainConfig):
        out[f.name] = {"type": _TYPE_NAMES[_field_type(f)], "default": f.default}
        if f.name in CHOICES:
            out[f.name]["choices"] = list(CHOICES[f.name])
    return out


def coerce_value(name: str, value: Any, type_name: str) -> Any:
    """Check `value` against a schema type; ints are accepted where floats are expected.

    Raises ValueError with what was found and what is allowed.
    """
    if type_name == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"int": int, "float": float, "bool": bool, "str": str}[type_name]
    if isinstance(value, bool) and expected is not bool:
        raise ValueError(f"{name}: {value!r} is a bool; expected {type_name}")
    if not isinstance(value, expected):
        raise ValueError(
            f"{name}: {clipped_repr(value)} is a {type(value).__name__}; expected {type_name}"
        )
    return value


def preset_params(name: str, source: str = "config") -> dict[str, Any]:
    """The field overrides of preset `name` ("" has none); an unknown name is a UserError."""
    if name == "":
        return {}
    if name not in PRESETS:
        raise UserError(
            f"{source}: preset: {clipped_repr(name)} is not a preset; known: {', '.join(PRESETS)}"
        )
    return dict(PRESETS[name])


def config_from_params(params: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a validated TrainConfig: the preset's fields (if `params` names one), then the
    explicit params over them. Unknown keys, wrong types and unknown presets raise UserError."""
    known = schema()
    preset = params.get("preset", "")
    if not isinstance(preset, str):
        raise UserError(f"{source}: preset: {preset!r} is a {type(preset).__name__}; expected str")
    values = {}
    for name, value in {**preset_params(preset, source), **params}.items():
        if name not in known:
            raise UserError(f"{source}: {name}: unknown trainer param; known: {', '.join(known)}")
        try:
            values[name] = coerce_value(name, value, known[name]["type"])
        except ValueError as err:
            raise UserError(f"{source}: {err}") from None
    config = TrainConfig(**values)
    config.validate()
    return config


if __name__ == "__main__":
    json.dump(schema(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
