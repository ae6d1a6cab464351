"""A run's parts built from its config: the byte tables of its tokenizer, the training
objective (GPT plus, with JEPA on, the predictor and target encoder), and the module that
forward/backward go through (compiled on CUDA, DDP over several ranks)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from jepardy.data.tokenizer import ByteTables, byte260_tables, sentencepiece_byte_tables
from jepardy.errors import UserError
from jepardy.trainer.config import TrainConfig
from jepardy.trainer.distributed import Dist
from jepardy.trainer.jepa import JepaSettings, TargetEncoder, TrainingObjective
from jepardy.trainer.model import GPT, GPTShape


def byte_tables(config: TrainConfig) -> ByteTables:
    if config.tokenizer_path:
        path = Path(config.tokenizer_path)
        if not path.is_file():
            raise UserError(f"config: tokenizer_path: {path} not found; run `jepardy data build`")
        return sentencepiece_byte_tables(path, config.vocab_size)
    return byte260_tables()


def build_objective(config: TrainConfig, device: torch.device) -> TrainingObjective:
    gpt = GPT(GPTShape.from_config(config))
    jepa, target_encoder = None, None
    if config.jepa_weight > 0:
        jepa = JepaSettings(
            config.jepa_weight,
            config.jepa_patch_size,
            config.jepa_var_weight,
            config.jepa_std_target,
        )
        if config.jepa_target == "ema":
            target_encoder = TargetEncoder(gpt.embed.weight, config.jepa_target_ema_decay)
    return TrainingObjective(gpt, jepa, target_encoder).to(device)


def uses_compile(config: TrainConfig, device: torch.device) -> bool:
    return config.compile and device.type == "cuda"


def wrap_model(objective: TrainingObjective, config: TrainConfig, env: Dist) -> nn.Module:
    """The module forward/backward go through: the objective, compiled on CUDA, under DDP
    with several ranks. `objective` itself (the raw module) stays the handle for optimizer
    groups, EMA, checkpoints and export."""
    model: nn.Module = objective
    if uses_compile(config, env.device):
        model = torch.compile(objective, dynamic=False)
    if env.world > 1:
        model = DistributedDataParallel(model, broadcast_buffers=False)
    return model
