"""The artifact: per-row int-N quantization of the model's matrices, zstd-compressed, plus
the bytes of the code that ran.

Format (`jepardy-intq-zstd-v1`): zstd( u32 header length | JSON header | tensor payloads ).
The header lists every tensor with its name, shape and kind: "q" (int8 codes, one row per
output channel, with float16 per-row scales) or "raw" (float16). Matrices (ndim >= 2) are
quantized; vectors are small and kept as float16, and so are the 2-D mixing weights whose
rows are not weight rows (`CONTROL_TENSORS`: resid_mix, skip_weights), as the challenge's
exports keep its control tensors in float.

The per-row clip is chosen among a few quantiles of |w| by reconstruction error, as the
study's export did (../shared/design/study.md, "Export").
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zstandard
from torch import Tensor

FORMAT_TAG = "jepardy-intq-zstd-v1"
# Candidate per-row clip levels, as quantiles of |w| in the row; 1.0 is the row's max.
CLIP_QUANTILES = (1.0, 0.9999, 0.999, 0.995, 0.99)
# 2-D tensors kept in float16, by the last part of their name: per-channel gates, tiny.
CONTROL_TENSORS = ("resid_mix", "skip_weights")


def is_quantized(name: str, tensor: Tensor) -> bool:
    """Whether a state-dict entry is stored as int-N codes (else as float16)."""
    control = name.rsplit(".", 1)[-1] in CONTROL_TENSORS
    return tensor.ndim >= 2 and tensor.is_floating_point() and not control


@dataclass(frozen=True)
class QuantizedRows:
    codes: Tensor  # int8 (rows, cols), values in [-qmax, qmax]
    scales: Tensor  # float16 (rows,)


def quantize_rows(weight: Tensor, bits: int) -> QuantizedRows:
    """Symmetric per-row quantization to `bits` bits (clip range +-(2^(bits-1) - 1))."""
    qmax = 2 ** (bits - 1) - 1
    w = weight.detach().float().reshape(weight.shape[0], -1)
    levels = torch.quantile(w.abs(), torch.tensor(CLIP_QUANTILES), dim=1).T  # (rows, K)
    levels = levels.clamp_min(1e-12)
    best_err = torch.full((w.shape[0],), float("inf"))
    best_scale = torch.ones(w.shape[0])
    for k in range(levels.shape[1]):
        # Round the scale to float16 first: the error must be that of the stored scale.
        scale = (levels[:, k] / qmax).half().float().clamp_min(1e-12)
        q = torch.clamp(torch.round(w / scale[:, None]), -qmax, qmax)
        err = (q * scale[:, None] - w).square().sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    codes = torch.clamp(torch.round(w / best_scale[:, None]), -qmax, qmax).to(torch.int8)
    return QuantizedRows(codes=codes, scales=best_scale.half())


def dequantize_rows(q: QuantizedRows, shape: tuple[int, ...]) -> Tensor:
    return (q.codes.float() * q.scales.float()[:, None]).reshape(shape)


def serialize_model(state: dict[str, Tensor], bits: int, zstd_level: int) -> bytes:
    """Quantize and compress a state dict into the artifact's model bytes."""
    entries, payloads, offset = [], [], 0
    for name in sorted(state):
        tensor = state[name].detach().cpu()
        if is_quantized(name, tensor):
            q = quantize_rows(tensor, bits)
            blobs = [q.codes.numpy().tobytes(), q.scales.numpy().tobytes()]
            kind = "q"
        else:
            blobs = [tensor.half().numpy().tobytes()]
            kind = "raw"
        sizes = [len(b) for b in blobs]
        entries.append(
            {
                "name": name,
                "shape": list(tensor.shape),
                "kind": kind,
                "offset": offset,
                "sizes": sizes,
            }
        )
        payloads.extend(blobs)
        offset += sum(sizes)
    header = json.dumps(
        {"format": FORMAT_TAG, "bits": bits, "tensors": entries}, sort_keys=True
    ).encode()
    raw = struct.pack("<I", len(header)) + header + b"".join(payloads)
    return zstandard.ZstdCompressor(level=zstd_level).compress(raw)


def deserialize_model(blob: bytes) -> dict[str, Tensor]:
    """The de-quantized float32 state dict stored in an artifact's model bytes."""
    raw = zstandard.ZstdDecompressor().decompress(blob)
    (header_len,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + header_len])
    if header.get("format") != FORMAT_TAG:
        raise ValueError(f"artifact format {header.get('format')!r}, expected {FORMAT_TAG!r}")
    body = memoryview(raw)[4 + header_len :]
    state = {}
    for e in header["tensors"]:
        shape = tuple(e["shape"])
        start = e["offset"]
        if e["kind"] == "q":
            n_codes, n_scales = e["sizes"]
            codes = np.frombuffer(body[start : start + n_codes], dtype=np.int8)
            scales = np.frombuffer(
                body[start + n_codes : start + n_codes + n_scales], dtype=np.float16
            )
            q = QuantizedRows(
                torch.from_numpy(codes.copy()).view(shape[0], -1), torch.from_numpy(scales.copy())
            )
            state[e["name"]] = dequantize_rows(q, shape)
        else:
            (n_raw,) = e["sizes"]
            values = np.frombuffer(body[start : start + n_raw], dtype=np.float16)
            state[e["name"]] = torch.from_numpy(values.astype(np.float32)).reshape(shape)
    return state


@dataclass(frozen=True)
class CodeFile:
    path: str  # relative to the package's parent directory, e.g. "jepardy/trainer/model.py"
    bytes_total: int
    sha256: str


def loaded_code_files(package: str = "jepardy") -> list[CodeFile]:
    """Every source file of `package` loaded in this process: the exact code that ran."""
    root = Path(sys.modules[package].__file__).resolve().parent.parent
    files: dict[str, CodeFile] = {}  # by path: a file loaded under two names counts once
    for key, module in sorted(sys.modules.items()):
        # `python -m jepardy.trainer` runs jepardy/trainer/__main__.py as "__main__"; its
        # spec keeps the real name, so that file is counted too.
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None and spec.name else key
        path = getattr(module, "__file__", None)
        if (name == package or name.startswith(package + ".")) and path and path.endswith(".py"):
            data = Path(path).read_bytes()
            rel = Path(path).resolve().relative_to(root).as_posix()
            files[rel] = CodeFile(rel, len(data), hashlib.sha256(data).hexdigest())
    return sorted(files.values(), key=lambda f: f.path)


def code_digest(files: list[CodeFile]) -> str:
    """sha256 over the sorted (path, file sha256) pairs."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path}\0{f.sha256}\n".encode())
    return h.hexdigest()
