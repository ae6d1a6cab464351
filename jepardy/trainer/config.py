"""The trainer's configuration: one typed dataclass, parsed once, unknown keys refused.

This module imports nothing heavy (no torch), so the orchestrator can ask for the schema
through the command line without paying for a torch import:

    python -m jepardy.trainer.config      # prints {"field": {"type": ..., "default": ...}}

(with "choices" for the fields that name one). A spec may name a preset (presets.py): its
fields are applied first, the spec's own params over them. The values each field may take,
alone and together, are rules.py's.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from jepardy.errors import UserError, clipped_repr
from jepardy.trainer.presets import PRESETS
from jepardy.trainer.rules import CHOICES, ConfigProblem, check_config

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


_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


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
