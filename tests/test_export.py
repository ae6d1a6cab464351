"""The artifact: int-N per-row quantization, serialization round trip, code bytes."""

from __future__ import annotations

import hashlib
import importlib
import json
import struct
import sys
from pathlib import Path

import pytest
import torch
import zstandard
from torch import nn

import jepardy
from jepardy.trainer.export import (
    CLIP_QUANTILES,
    FORMAT_TAG,
    code_digest,
    dequantize_rows,
    deserialize_model,
    loaded_code_files,
    quantize_rows,
    row_clips,
    row_steps,
    serialize_model,
)
from jepardy.trainer.model import GPT, GPTShape

REPO_ROOT = Path(jepardy.__file__).resolve().parent.parent


def sample_weight(rows: int = 8, cols: int = 64, seed: int = 0) -> torch.Tensor:
    """Gaussian rows, some with a large outlier (so a clip below the max can win)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    w[0, 5] = 0.5
    w[3, -1] = -0.3
    w[5] *= 100.0
    return w


def sample_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "blocks.0.layer.weight": sample_weight(),
        "blocks.0.conv.weight": torch.randn(4, 3, 5, generator=g),  # ndim 3: rows are dim 0
        "blocks.0.layer.scale": torch.randn(16, generator=g),
        "blocks.0.zero.weight": torch.zeros(2, 8),
        "small.weight": torch.randn(3, 4, generator=g),  # outside the blocks, small: float16
    }


def check_codes_and_scales(w: torch.Tensor, q, qmax: int, floor_unit: float = 0.0):
    """The codes are `w` rounded at each row's step (max(clip, floor) / qmax, the clip from
    row_clips), clamped to +-qmax: within half a step inside the clip range, the excess over
    qmax steps beyond it. The stored scales restore them with no more error than the steps."""
    w = w.reshape(w.shape[0], -1).float()
    steps = row_steps(row_clips(w, qmax), qmax, floor_unit)
    assert torch.equal(q.codes.float(), torch.clamp(torch.round(w / steps[:, None]), -qmax, qmax))
    restored = dequantize_rows(q, tuple(w.shape))
    at_steps = q.codes.float() * steps[:, None]
    err, err_at_steps = (restored - w).square().sum(), (at_steps - w).square().sum()
    assert err <= err_at_steps * (1 + 1e-5) + 1e-12


# --- quantization ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [6, 4, 8])
def test_codes_stay_in_range_and_use_it(bits):
    qmax = 2 ** (bits - 1) - 1
    w = sample_weight()
    q = quantize_rows(w, bits)
    assert q.codes.dtype == torch.int8
    assert q.scales.dtype == torch.float16
    assert q.codes.shape == w.shape and q.scales.shape == (w.shape[0],)
    assert int(q.codes.min()) >= -qmax and int(q.codes.max()) <= qmax
    # The clip level is at most the row's max, so each row's largest value hits the limit.
    assert (q.codes.abs().amax(dim=1) == qmax).all()
    check_codes_and_scales(w, q, qmax)


def test_int6_codes_in_range_even_for_extreme_rows():
    w = torch.tensor([[1e4, -1e4, 1e-3, 0.0], [1e-8, 2e-8, -3e-8, 0.0], [0.0, 0.0, 0.0, 7.0]])
    q = quantize_rows(w, 6)
    assert int(q.codes.abs().max()) <= 31
    # A row below float16's resolution may store scale 0: it reads back as zeros.
    assert torch.isfinite(q.scales.float()).all() and (q.scales.float() >= 0).all()
    check_codes_and_scales(w, q, 31)


def test_chosen_clip_is_no_worse_than_the_row_max():
    """The clip search keeps the candidate with the smallest reconstruction error, so it
    never loses to plain max scaling (the 1.0 quantile)."""
    assert 1.0 in CLIP_QUANTILES
    w = sample_weight(rows=16, cols=256, seed=3)
    q = quantize_rows(w, 6)
    err = (dequantize_rows(q, tuple(w.shape)) - w).square().sum(dim=1)
    max_scale = (w.abs().amax(dim=1) / 31).half().float()
    plain = torch.clamp(torch.round(w / max_scale[:, None]), -31, 31) * max_scale[:, None]
    plain_err = (plain - w).square().sum(dim=1)
    assert (err <= plain_err * (1 + 1e-5) + 1e-12).all()
    assert (err < plain_err).any()  # the outlier rows gain from clipping


# --- serialization --------------------------------------------------------------------------


def test_round_trip_preserves_names_shapes_and_values():
    state = sample_state()
    restored = deserialize_model(serialize_model(state, bits=6, zstd_level=3))
    assert sorted(restored) == sorted(state)
    for name, tensor in state.items():
        assert restored[name].shape == tensor.shape, name
        assert restored[name].dtype == torch.float32, name
    # Vectors are kept as float16.
    torch.testing.assert_close(
        restored["blocks.0.layer.scale"],
        state["blocks.0.layer.scale"].half().float(),
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        restored["small.weight"], state["small.weight"].half().float(), rtol=0, atol=0
    )
    # Matrices: the same codes and scales as quantize_rows.
    for name in ("blocks.0.layer.weight", "blocks.0.conv.weight"):
        q = quantize_rows(state[name], 6)
        torch.testing.assert_close(
            restored[name], dequantize_rows(q, tuple(state[name].shape)), rtol=0, atol=0
        )
        check_codes_and_scales(state[name], q, 31)
    assert torch.equal(restored["blocks.0.zero.weight"], torch.zeros(2, 8))


def test_serialization_is_deterministic():
    a = serialize_model(sample_state(), bits=6, zstd_level=3)
    b = serialize_model(dict(reversed(list(sample_state().items()))), bits=6, zstd_level=3)
    assert a == b


def read_header(blob: bytes) -> tuple[dict, bytes]:
    raw = zstandard.ZstdDecompressor().decompress(blob)
    (n,) = struct.unpack_from("<I", raw)
    return json.loads(raw[4 : 4 + n]), raw[4 + n :]


def test_header_lists_kinds_code_ranges_and_floor():
    blob = serialize_model(sample_state(), bits=6, zstd_level=3, floor_unit=0.25)
    header, _ = read_header(blob)
    assert header["format"] == FORMAT_TAG and header["floor_unit"] == 0.25
    kinds = {e["name"]: (e["kind"], e["qmax"]) for e in header["tensors"]}
    assert kinds == {
        "blocks.0.conv.weight": ("q", 31),
        "blocks.0.layer.scale": ("raw", 0),
        "blocks.0.layer.weight": ("q", 31),
        "blocks.0.zero.weight": ("q", 31),
        "small.weight": ("raw", 0),
    }


def test_embedding_tables_take_int8_codes_and_large_entries_outside_blocks_are_quantized():
    g = torch.Generator().manual_seed(4)
    state = {
        "embed.weight": torch.randn(1024, 128, generator=g),  # > 65,536: int8 as the record
        "bigram.proj.weight": torch.randn(512, 128, generator=g),  # 65,536: float16
        "value_embed.proj.weight": torch.randn(256, 512, generator=g),  # larger: int6
    }
    header, _ = read_header(serialize_model(state, bits=6, zstd_level=3))
    kinds = {e["name"]: (e["kind"], e["qmax"]) for e in header["tensors"]}
    assert kinds == {
        "bigram.proj.weight": ("raw", 0),
        "embed.weight": ("q", 127),
        "value_embed.proj.weight": ("q", 31),
    }


def test_scale_floor_sets_a_shared_step_for_small_rows():
    """Rows whose clip is under the floor take their codes at step floor_unit / qmax and
    share one stored scale (one repeated value: it compresses as well as the floor)."""
    w = sample_weight(rows=16, cols=256, seed=5)  # |w| mostly ~0.02, row 5 ~100x larger
    q = quantize_rows(w, 6, floor_unit=1.0)
    small = w.abs().amax(dim=1) < 1.0
    assert small.sum() >= 10
    shared = q.scales.float()[small]
    assert (shared == shared[0]).all()
    assert (q.scales.float()[~small] > shared[0]).all()
    check_codes_and_scales(w, q, 31, floor_unit=1.0)


def test_scales_restore_coarse_codes_at_their_centroid():
    """At a step of 1.25 std (the leader stack's under the cap), the weights of a code sit
    nearer zero than the code's step: the stored scale is the least-squares one for the
    codes, sum(w q) / sum(q^2) in float16, and the error is ~10% below restoring at the step."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(64, 512, generator=g) * 0.02
    floor_unit = 1.25 * 0.02 * 31
    q = quantize_rows(w, 6, floor_unit=floor_unit)
    codes = q.codes.double()
    least_squares = (w.double() * codes).sum() / codes.square().sum()
    assert (q.scales == least_squares.half()).all()
    step = torch.tensor(floor_unit / 31).half().float()
    err = (dequantize_rows(q, tuple(w.shape)) - w).square().sum()
    err_at_step = (q.codes.float() * step - w).square().sum()
    assert 0.85 < float(err / err_at_step) < 0.95


def test_other_format_tag_is_refused():
    header, body = read_header(serialize_model(sample_state(), bits=6, zstd_level=3))
    header["format"] = "someone-else-v9"
    text = json.dumps(header, sort_keys=True).encode()
    forged = zstandard.ZstdCompressor().compress(struct.pack("<I", len(text)) + text + body)
    with pytest.raises(ValueError, match="someone-else-v9"):
        deserialize_model(forged)


def test_gpt_round_trip_keeps_logits_close():
    shape = GPTShape(
        vocab_size=64,
        n_layers=2,
        d_model=32,
        n_heads=4,
        n_kv_heads=2,
        mlp_mult=2,
        rope_base=10000.0,
        logit_softcap=30.0,
        init_std=0.02,
    )
    torch.manual_seed(0)
    gpt = GPT(shape)
    for block in gpt.blocks:  # as after training: no zero matrices
        nn.init.normal_(block.attn.proj.weight, std=0.02)
        nn.init.normal_(block.mlp.proj.weight, std=0.02)
    idx = torch.randint(0, 64, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = gpt.logits(gpt(idx))
        state = deserialize_model(serialize_model(gpt.state_dict(), bits=6, zstd_level=3))
        copy = GPT(shape)
        copy.load_state_dict(state)  # strict: every name and shape matches
        after = copy.logits(copy(idx))
    assert before.abs().max() > 0.5  # the comparison is not between two tiny numbers
    # Each matrix moves by ~2% (relative norm); the logits by about as much.
    assert float((after - before).norm() / before.norm()) < 0.06
    probs_before, probs_after = before.softmax(-1), after.softmax(-1)
    assert float((probs_after - probs_before).abs().max()) < 0.01
    # int6 is lossy: the logits move, though little.
    assert not torch.equal(after, before)


# --- code bytes -----------------------------------------------------------------------------


def test_loaded_code_files_are_the_package_sources_on_disk():
    files = loaded_code_files()
    paths = [f.path for f in files]
    assert paths == sorted(paths) and len(set(paths)) == len(paths)
    assert "jepardy/__init__.py" in paths
    assert "jepardy/trainer/export.py" in paths
    assert "jepardy/trainer/model.py" in paths
    for f in files:
        assert f.path.startswith("jepardy/") and f.path.endswith(".py")
        data = (REPO_ROOT / f.path).read_bytes()
        assert f.bytes_total == len(data), f.path
        assert f.sha256 == hashlib.sha256(data).hexdigest(), f.path
    # Only loaded modules count: the orchestrator's modules are not part of the trainer.
    loaded = {
        Path(m.__file__).resolve()
        for name, m in list(sys.modules.items())
        if (name == "jepardy" or name.startswith("jepardy.")) and getattr(m, "__file__", None)
    }
    assert {REPO_ROOT / p for p in paths} == loaded


def test_code_digest_formula_and_sensitivity():
    files = loaded_code_files()
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path}\0{f.sha256}\n".encode())
    assert code_digest(files) == h.hexdigest()
    assert code_digest(files[:-1]) != code_digest(files)


@pytest.fixture
def temp_package(tmp_path, monkeypatch):
    name = "jepardy_tmp_pkg"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(f"{name}.mod")
    yield name, pkg
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def test_code_digest_changes_with_file_content(temp_package):
    name, pkg = temp_package
    first = loaded_code_files(name)
    assert [(f.path, f.bytes_total) for f in first] == [
        (f"{name}/__init__.py", 0),
        (f"{name}/mod.py", 10),
    ]
    (pkg / "mod.py").write_text("VALUE = 22\n")  # the file on disk is what is measured
    second = loaded_code_files(name)
    assert second[1].bytes_total == 11
    assert second[1].sha256 == hashlib.sha256(b"VALUE = 22\n").hexdigest()
    assert second[0] == first[0]
    assert code_digest(second) != code_digest(first)
    assert code_digest(loaded_code_files(name)) == code_digest(second)


def test_control_tensors_stay_float16():
    """resid_mix and skip_weights are 2-D but their rows are gates, not weight rows."""
    g = torch.Generator().manual_seed(2)
    state = {
        "blocks.0.resid_mix": torch.randn(2, 16, generator=g),
        "skip_weights": torch.randn(3, 16, generator=g),
        "blocks.0.attn.q.weight": torch.randn(16, 16, generator=g),
    }
    header, _ = read_header(serialize_model(state, bits=6, zstd_level=3))
    kinds = {e["name"]: e["kind"] for e in header["tensors"]}
    assert kinds == {
        "blocks.0.resid_mix": "raw",
        "skip_weights": "raw",
        "blocks.0.attn.q.weight": "q",
    }
    restored = deserialize_model(serialize_model(state, bits=6, zstd_level=3))
    for name in ("blocks.0.resid_mix", "skip_weights"):
        torch.testing.assert_close(restored[name], state[name].half().float(), rtol=0, atol=0)
