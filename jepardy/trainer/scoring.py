"""Scoring as the challenge does it: the artifact written, read back from disk, de-quantized
into the model, and evaluated plainly and (with `eval_stride`) with sliding windows.

Shared by the training run (train.py) and the storage-only re-export (export_run.py), so
both measure the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepardy.errors import UserError
from jepardy.trainer.budget import BudgetError, FittedExport, fit_export
from jepardy.trainer.config import ARTIFACT_CAP_BYTES, TrainConfig
from jepardy.trainer.distributed import Dist
from jepardy.trainer.eval import ByteCounter, EvalResult, Forward, evaluate, evaluate_sliding
from jepardy.trainer.export import deserialize_model
from jepardy.trainer.model import GPT

MODEL_FILE = "model.intq.zst"


@dataclass
class Scorer:
    """Evaluates `gpt` (through `forward`, e.g. a compiled copy) on the validation tokens."""

    gpt: GPT
    forward: Forward
    val_tokens: np.ndarray
    counter: ByteCounter
    config: TrainConfig
    env: Dist
    log: Callable[[str], None]

    def plain(self, tag: str) -> EvalResult:
        result = evaluate(
            self.gpt,
            self.val_tokens,
            self.counter,
            self.config.seq_len,
            self.config.val_batch_tokens,
            self.env,
            forward=self.forward,
        )
        self.log(f"{tag} val_loss:{result.val_loss:.6f} val_bpb:{result.val_bpb:.6f}")
        return result

    def sliding(self, tag: str) -> EvalResult | None:
        """The sliding-window score at `eval_stride`; None when it is 0 (off)."""
        stride = self.config.eval_stride
        if stride <= 0:
            return None
        result = evaluate_sliding(
            self.gpt,
            self.val_tokens,
            self.counter,
            self.config.seq_len,
            stride,
            self.config.val_batch_tokens,
            self.env,
            forward=self.forward,
        )
        self.log(
            f"{tag} val_loss:{result.val_loss:.6f} val_bpb:{result.val_bpb:.6f} stride:{stride}"
        )
        return result


def model_budget_bytes(config: TrainConfig, code_bytes: int) -> int:
    """The compressed model's byte budget: `export_target_bytes`, or the challenge's cap
    minus the code bytes of the artifact."""
    return config.export_target_bytes or ARTIFACT_CAP_BYTES - code_bytes


def write_artifact(
    state: dict[str, torch.Tensor], config: TrainConfig, out_dir: Path, env: Dist, budget_bytes: int
) -> FittedExport | None:
    """Rank 0 fits `state` to `budget_bytes` (budget.py) and writes out_dir/MODEL_FILE
    (atomically); every rank returns once the file is there (None on the other ranks)."""
    path = out_dir / MODEL_FILE
    fitted = None
    if env.is_main:
        try:
            fitted = fit_export(state, config.quant_bits, config.zstd_level, budget_bytes)
        except BudgetError as err:
            raise UserError(f"export: {err} (budget: export_target_bytes or cap - code)") from None
        tmp = out_dir / (MODEL_FILE + ".tmp")
        tmp.write_bytes(fitted.blob)
        tmp.replace(path)
    env.barrier()
    return fitted


def score_roundtrip(scorer: Scorer, out_dir: Path, budget_bytes: int) -> dict[str, Any]:
    """Export the scorer's model to out_dir within `budget_bytes`, load the artifact back
    from disk into it, and score it: the result fields val_loss, val_bpb, sliding_val_loss,
    sliding_val_bpb (None without eval_stride), val_tokens, val_bytes, model_bytes, and the
    export's export_budget_bytes, export_floor_unit and roundtrip_mse (None off rank 0)."""
    config = scorer.config
    fitted = write_artifact(scorer.gpt.state_dict(), config, out_dir, scorer.env, budget_bytes)
    path = out_dir / MODEL_FILE
    model_bytes = path.stat().st_size
    scorer.gpt.load_state_dict(deserialize_model(path.read_bytes()))
    tag = f"final_int{config.quant_bits}_zstd{config.zstd_level}_roundtrip"
    if fitted is not None:
        scorer.log(
            f"export budget_bytes:{budget_bytes} model_bytes:{model_bytes} "
            f"floor_unit:{fitted.floor_unit:.6g} roundtrip_mse:{fitted.roundtrip_mse:.6g}"
        )
    final = scorer.plain(tag)
    sliding = scorer.sliding(f"{tag}_sliding_window")
    return {
        "val_loss": final.val_loss,
        "val_bpb": final.val_bpb,
        "sliding_val_loss": sliding.val_loss if sliding else None,
        "sliding_val_bpb": sliding.val_bpb if sliding else None,
        "val_tokens": final.tokens,
        "val_bytes": final.bytes_total,
        "model_bytes": model_bytes,
        "export_budget_bytes": budget_bytes,
        "export_floor_unit": fitted.floor_unit if fitted else None,
        "roundtrip_mse": fitted.roundtrip_mse if fitted else None,
    }
