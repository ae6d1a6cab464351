"""The trainer's configuration: one typed dataclass, parsed once, unknown keys refused.

This module imports nothing heavy (no torch), so the orchestrator can ask for the schema
through the command line without paying for a torch import:

    python -m jepardy.trainer.config      # prints {"field": {"type": ..., "default": ...}}
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, fields
from typing import Any

from jepardy.errors import UserError

# The challenge's artifact cap: code bytes + compressed model bytes, decimal bytes.
ARTIFACT_CAP_BYTES = 16_000_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Units are in the names where they matter."""

    # --- data ---
    data_dir: str = "data/embedded/datasets/embedded_sp1024"  # holds fineweb_{train,val}_*.bin
    # SentencePiece model for byte accounting; "" means byte-level data (byte260 vocab).
    tokenizer_path: str = "data/embedded/tokenizers/embedded_1024_bpe.model"
    vocab_size: int = 1024
    seq_len: int = 128
    train_batch_tokens: int = 4096  # global tokens per optimizer step, over all ranks
    val_batch_tokens: int = 16384  # tokens per evaluation forward pass, over all ranks
    val_max_tokens: int = 0  # evaluate on at most this many val tokens; 0 = all of them

    # --- model (GPT with tied embeddings) ---
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2  # grouped-query attention: n_heads must be a multiple
    mlp_mult: int = 2
    rope_base: float = 10000.0
    logit_softcap: float = 30.0  # the challenge's baseline uses 30
    init_std: float = 0.02

    # --- optimisation (AdamW; Muon comes with the leader stack) ---
    lr: float = 3e-3
    embed_lr: float = 3e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # on the model's own gradients; 0 disables
    iterations: int = 200  # step cap
    wallclock_s: float = 0.0  # training-time budget in seconds (eval excluded); 0 = none
    warmup_steps: int = 10
    # Fraction of the run (of the wallclock budget when one is set, else of `iterations`)
    # over which the learning rate decays linearly to 0 at the end.
    warmdown_frac: float = 0.3

    # --- JEPA auxiliary loss (see jepa.py and ../shared/design/study.md) ---
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

    # --- run ---
    seed: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda"

    def validate(self) -> None:
        """Raise UserError for values that are well-typed but meaningless."""
        checks = [
            (self.d_model % self.n_heads == 0, "d_model", "a multiple of n_heads"),
            (self.n_heads % self.n_kv_heads == 0, "n_heads", "a multiple of n_kv_heads"),
            ((self.d_model // self.n_heads) % 2 == 0, "d_model", "head_dim even (RoPE)"),
            (self.seq_len % self.jepa_patch_size == 0, "seq_len", "a multiple of jepa_patch_size"),
            (self.seq_len // self.jepa_patch_size >= 2, "seq_len", "at least 2 JEPA patches"),
            (self.jepa_weight >= 0, "jepa_weight", ">= 0"),
            (self.jepa_target in ("online", "ema"), "jepa_target", '"online" or "ema"'),
            (self.device in ("auto", "cpu", "cuda"), "device", '"auto", "cpu" or "cuda"'),
            (2 <= self.quant_bits <= 8, "quant_bits", "between 2 and 8"),
            (self.iterations >= 1, "iterations", ">= 1"),
            (self.wallclock_s >= 0, "wallclock_s", ">= 0"),
            (0 <= self.warmdown_frac <= 1, "warmdown_frac", "between 0 and 1"),
            (self.vocab_size >= 2, "vocab_size", ">= 2"),
            (0 <= self.ema_decay < 1, "ema_decay", "in [0, 1)"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise UserError(
                    f"config: {name}: {getattr(self, name)!r} invalid; must be {allowed}"
                )


_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


def _field_type(f: dataclasses.Field) -> type:
    # `from __future__ import annotations` makes f.type a string; map it back.
    return {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]


def schema() -> dict[str, dict[str, Any]]:
    """Field name -> {"type": "int"|"float"|"bool"|"str", "default": value}."""
    return {
        f.name: {"type": _TYPE_NAMES[_field_type(f)], "default": f.default}
        for f in fields(TrainConfig)
    }


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
        raise ValueError(f"{name}: {value!r} is a {type(value).__name__}; expected {type_name}")
    return value


def config_from_params(params: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a validated TrainConfig; unknown keys and wrong types raise UserError."""
    known = schema()
    values = {}
    for name, value in params.items():
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
