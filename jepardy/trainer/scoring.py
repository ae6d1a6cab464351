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

from jepardy.trainer.config import TrainConfig
from jepardy.trainer.distributed import Dist
from jepardy.trainer.eval import ByteCounter, EvalResult, Forward, evaluate, evaluate_sliding
from jepardy.trainer.export import deserialize_model, serialize_model
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


def write_artifact(
    state: dict[str, torch.Tensor], config: TrainConfig, out_dir: Path, env: Dist
) -> Path:
    """Rank 0 serializes `state` with the config's bits and zstd level into
    out_dir/MODEL_FILE (atomically); every rank returns once the file is there."""
    path = out_dir / MODEL_FILE
    if env.is_main:
        blob = serialize_model(state, config.quant_bits, config.zstd_level)
        tmp = out_dir / (MODEL_FILE + ".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
    env.barrier()
    return path


def score_roundtrip(scorer: Scorer, out_dir: Path) -> dict[str, Any]:
    """Export the scorer's model to out_dir, load the artifact back from disk into it, and
    score it: the result fields val_loss, val_bpb, sliding_val_loss, sliding_val_bpb (None
    without eval_stride), val_tokens, val_bytes, model_bytes."""
    config = scorer.config
    path = write_artifact(scorer.gpt.state_dict(), config, out_dir, scorer.env)
    model_bytes = path.stat().st_size
    scorer.gpt.load_state_dict(deserialize_model(path.read_bytes()))
    tag = f"final_int{config.quant_bits}_zstd{config.zstd_level}_roundtrip"
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
    }
