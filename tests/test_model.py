"""The GPT's leader-stack features, each against what it is defined to do."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jepardy.trainer.features import BigramHash, SmearGate, bigram_buckets
from jepardy.trainer.model import (
    GPT,
    GPTShape,
    Rotary,
    apply_rotary,
    exclusive_self_attention,
)

BASE = GPTShape(
    vocab_size=64,
    n_layers=4,
    d_model=32,
    n_heads=4,
    n_kv_heads=2,
    mlp_mult=2,
    rope_base=10000.0,
    logit_softcap=30.0,
    init_std=0.02,
)
ALL_ON = replace(
    BASE,
    mlp_activation="relu2",
    matrix_init="orthogonal",
    embed_init_std=0.005,
    embed_norm=True,
    qk_gain=1.5,
    resid_mix=True,
    unet_skips=True,
    ln_scale=True,
    rope_dims=4,
    smear_gate=True,
    bigram_hash_buckets=16,
    bigram_dim=8,
    xsa_last_n=2,
    value_embed_last_n=1,
    value_embed_dim=8,
)


def tokens(seed: int = 0, batch: int = 2, length: int = 16) -> torch.Tensor:
    return torch.randint(
        0, BASE.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed)
    )


def test_plain_shape_has_the_original_parameters():
    """Every feature off: the parameter names (and so checkpoints and artifacts) of the plain
    GPT, nothing more."""
    names = {n for n, _ in GPT(BASE).named_parameters()}
    per_block = {"attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc", "mlp.proj"}
    expected = {"embed.weight"} | {
        f"blocks.{i}.{p}" for i in range(4) for p in ("attn_scale", "mlp_scale")
    }
    expected |= {f"blocks.{i}.{m}.weight" for i in range(4) for m in per_block}
    assert names == expected


def test_every_feature_on_builds_runs_and_gets_gradients():
    torch.manual_seed(0)
    gpt = GPT(ALL_ON)
    for block in gpt.blocks:  # as after training: gradients reach every parameter
        nn.init.normal_(block.attn.proj.weight, std=0.02)
        nn.init.normal_(block.mlp.proj.weight, std=0.02)
    nn.init.normal_(gpt.bigram.table.weight, std=0.02)
    idx = tokens()
    hidden = gpt(idx)
    assert hidden.shape == (2, 16, 32)
    gpt.token_losses(idx, tokens(1)).mean().backward()
    for name, param in gpt.named_parameters():
        assert param.grad is not None and param.grad.abs().max() > 0, name
    names = {n for n, _ in gpt.named_parameters()}
    assert {"skip_weights", "smear.gate", "bigram.table.weight", "value_embed.proj.weight"} <= names
    assert "blocks.3.ve_scale" in names and "blocks.2.ve_scale" not in names
    assert [b.attn.xsa for b in gpt.blocks] == [False, False, True, True]
    assert gpt.blocks[0].attn.q_gain.tolist() == [1.5] * 4
    assert gpt.skip_weights.shape == (2, 32)


def test_partial_rope_rotates_only_its_dims():
    x = torch.randn(1, 2, 8, 16)
    cos, sin = Rotary(dims=4, base=10000.0)(8, torch.device("cpu"))
    out = apply_rotary(x, cos, sin)
    assert torch.equal(out[..., 4:], x[..., 4:])  # the other 12 dims pass through
    assert not torch.allclose(out[..., :4], x[..., :4])
    # A rotation: each rotated pair keeps its norm.
    pairs_in = x[..., :2].square() + x[..., 2:4].square()
    pairs_out = out[..., :2].square() + out[..., 2:4].square()
    torch.testing.assert_close(pairs_in, pairs_out)
    # All dims: the usual full RoPE, position 0 unchanged.
    full = apply_rotary(x, *Rotary(16, 10000.0)(8, torch.device("cpu")))
    torch.testing.assert_close(full[:, :, 0], x[:, :, 0])


def test_xsa_removes_each_heads_own_value_direction():
    y = torch.randn(2, 4, 8, 16)  # 4 query heads
    v = torch.randn(2, 2, 8, 16)  # 2 kv heads: query heads 0,1 -> kv 0; 2,3 -> kv 1
    out = exclusive_self_attention(y, v)
    unit = F.normalize(v.repeat_interleave(2, dim=1), dim=-1)  # each query head's own v
    dots = (out * unit).sum(-1)
    torch.testing.assert_close(dots, torch.zeros_like(dots), rtol=0, atol=1e-5)
    # Only that component goes: the rest of each output is left alone.
    torch.testing.assert_close(out + (y * unit).sum(-1, keepdim=True) * unit, y)


def test_smear_gate_blends_with_the_previous_position():
    gate = SmearGate(3)
    x = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    # gate 0 -> sigmoid 0.5: the mean of each position and its predecessor (zeros first).
    expected = 0.5 * x + 0.5 * torch.cat((torch.zeros(1, 1, 3), x[:, :-1]), dim=1)
    torch.testing.assert_close(gate(x), expected)
    with torch.no_grad():
        gate.gate.fill_(-1e4)  # closed: the identity
    torch.testing.assert_close(gate(x), x)


def test_bigram_buckets_hash_pairs_and_reserve_the_first_position():
    idx = torch.tensor([[5, 7, 5, 7, 9]])
    buckets = bigram_buckets(idx, 16)
    assert buckets[0, 0] == 15  # no previous token: the reserved last bucket
    assert ((buckets[0, 1:] >= 0) & (buckets[0, 1:] < 15)).all()
    assert buckets[0, 1] == buckets[0, 3]  # the same (5, 7) pair, the same bucket
    assert buckets[0, 1] == (36313 * 7 ^ 27191 * 5) % 15
    table = BigramHash(16, 8, 32)
    assert table(idx).abs().max() == 0  # the table starts at zero: adds nothing at init


@pytest.mark.parametrize("init", ["normal", "uniform", "orthogonal"])
def test_matrix_init_and_zero_output_layers(init):
    torch.manual_seed(0)
    gpt = GPT(replace(BASE, matrix_init=init))
    q = gpt.blocks[0].attn.q.weight
    if init == "orthogonal":
        torch.testing.assert_close(q @ q.T, torch.eye(32), rtol=0, atol=1e-5)
    elif init == "uniform":
        assert q.abs().max() <= 32**-0.5
    else:
        assert 0.015 < q.std() < 0.025
    assert all(b.attn.proj.weight.abs().max() == 0 for b in gpt.blocks)
    # Zero output layers: every block is the identity at init, with every feature on too
    # (U-Net skips then only rescale the stream, which the final norm undoes).
    idx = tokens()
    full = GPT(replace(ALL_ON, matrix_init=init))
    with torch.no_grad():
        x = full.smear(F.rms_norm(full.embed(idx) + full.bigram(idx), (32,)))
        torch.testing.assert_close(full(idx), F.rms_norm(x, (32,)), atol=1e-5, rtol=0)


def test_rope_base_rescales_past_its_training_context_as_the_record():
    """The 2026-03-23 record's Rotary: base * (T / 1024)^(d / (d - 2)) past 1024 tokens."""
    from jepardy.trainer.model import rope_base_for

    assert rope_base_for(10000.0, 16, 1024, 1024) == 10000.0
    assert rope_base_for(10000.0, 16, 512, 1024) == 10000.0
    assert rope_base_for(10000.0, 16, 2048, 0) == 10000.0
    rescaled = rope_base_for(10000.0, 16, 2048, 1024)
    assert rescaled == pytest.approx(10000.0 * 2 ** (16 / 14))
    cpu = torch.device("cpu")
    ours = Rotary(16, 10000.0, train_seq_len=1024)(2048, cpu)
    fixed = Rotary(16, rescaled)(2048, cpu)
    for a, b in zip(ours, fixed, strict=True):
        torch.testing.assert_close(a, b)
    # At seq len 1024 the same module keeps base 10000: a spec that shortens the sequence
    # trains the model the record would train at that length.
    short = Rotary(16, 10000.0, train_seq_len=1024)(1024, cpu)
    plain = Rotary(16, 10000.0)(1024, cpu)
    for a, b in zip(short, plain, strict=True):
        torch.testing.assert_close(a, b)
