"""tokens/s and MFU: the FLOPs estimate by hand, the device table, MFU's null on a CPU."""

from __future__ import annotations

import pytest

from jepardy.trainer.config import TrainConfig, config_from_params
from jepardy.trainer.throughput import flops_per_token, mfu, peak_flops


def test_flops_per_token_by_hand():
    c = TrainConfig(vocab_size=100, n_layers=2, d_model=16, n_heads=4, n_kv_heads=2, seq_len=32)
    # per layer: q 16*16 + k, v 2 * 16*8 + proj 16*16 = 768; MLP 2 * 16 * 32 = 1024
    n = 2 * (768 + 1024) + 100 * 16
    assert flops_per_token(c) == 6 * n + 12 * 2 * 16 * 32
    jepa = TrainConfig(**{**c.__dict__, "jepa_weight": 0.1, "jepa_patch_size": 8})
    assert flops_per_token(jepa) == flops_per_token(c) + 6 * 2 * 16 * 16 / 8


def test_leader_stack_flops_are_in_the_expected_range():
    # ~26 M block weights + the 0.5 M head: 6 N alone is ~1.6e8; attention at 2048 adds more.
    flops = flops_per_token(config_from_params({"preset": "leader_stack"}))
    assert 1.5e8 < flops < 4.0e8


def test_peak_flops_table_and_mfu():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("cpu") is None
    c = config_from_params({"preset": "leader_stack"})
    assert mfu(1e6, c, "cpu", 1) is None
    assert mfu(1e6, c, "NVIDIA H100 80GB HBM3", 8) == pytest.approx(
        1e6 * flops_per_token(c) / (8 * 989e12)
    )
