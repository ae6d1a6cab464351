"""The artifact: per-row int-N quantization of the model's large matrices, zstd-compressed,
plus the bytes of the code that ran.

Format (`jepardy-intq-zstd-v2`): zstd( u32 header length | JSON header | tensor payloads ).
The header lists every tensor with its name, shape and kind: "q" (int8 codes in
[-qmax, qmax], one row per output channel, with float16 per-row scales) or "raw" (float16).
Per tensor, as the challenge's records choose (the 2026-03-23 record's
`mixed_quantize_int6`):
- float16 ("raw"): vectors, tensors outside the blocks of at most SMALL_TENSOR_NUMEL
  elements (the record's 65,536) and the 2-D mixing weights whose rows are gates, not weight rows
  (`CONTROL_TENSORS`: resid_mix, skip_weights);
- int8 codes (qmax 127): the embedding tables (`EMBEDDING_TABLES`), as the record keeps its
  tied embedding, which is also the output head;
- int-`bits` codes (qmax 2^(bits-1) - 1, 31 for int6): every other matrix.

Step of a row's codes: max(clip / qmax, floor_unit / qmax). The clip is chosen among a few
quantiles of the row's |w| by reconstruction error (the study's export did so). `floor_unit` is
the scale floor in units of 1/qmax: the records fix it at 1 (a floor of 1/31 for int6, 1/127
for int8), so rows of small weights share one absolute step and compress well; 0 means no
floor (each row adapts to its spread, about 5.3 bits a weight at int6 whatever the weights'
scale). budget.py searches it so that the artifact fits a byte budget. The stored scale, by
which the codes are multiplied back, is the least-squares one for the codes (one for all the
rows at the floor), not the step (`reconstruction_scales`).

v1 artifacts (one `bits` for every matrix, no floor) read back the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zstandard
from torch import Tensor

FORMAT_TAG = "jepardy-intq-zstd-v2"
READABLE_TAGS = ("jepardy-intq-zstd-v1", FORMAT_TAG)
# Candidate per-row clip levels, as quantiles of |w| in the row; 1.0 is the row's max.
CLIP_QUANTILES = (1.0, 0.9999, 0.999, 0.995, 0.99)
# 2-D tensors kept in float16, by the last part of their name: per-channel gates, tiny.
CONTROL_TENSORS = ("resid_mix", "skip_weights")
# At most this many elements: kept in float16 (the 2026-03-23 record's threshold).
SMALL_TENSOR_NUMEL = 65_536
# Embedding tables (GPT state-dict names), stored as int8 codes as the record stores them.
EMBEDDING_TABLES = frozenset({"embed.weight", "bigram.table.weight", "value_embed.table.weight"})
EMBEDDING_BITS = 8


def tensor_qmax(name: str, tensor: Tensor, bits: int) -> int:
    """The code range +-qmax a state-dict entry is stored with; 0 means float16."""
    control = name.rsplit(".", 1)[-1] in CONTROL_TENSORS
    if tensor.ndim < 2 or not tensor.is_floating_point() or control:
        return 0
    # The blocks' matrices are always quantized (at full size all exceed the threshold; at
    # toy size this keeps the export's behaviour testable); other small entries stay float16.
    if tensor.numel() <= SMALL_TENSOR_NUMEL and not name.startswith("blocks."):
        return 0
    tensor_bits = max(bits, EMBEDDING_BITS) if name in EMBEDDING_TABLES else bits
    return 2 ** (tensor_bits - 1) - 1


def is_quantized(name: str, tensor: Tensor) -> bool:
    """Whether a state-dict entry is stored as int-N codes (else as float16)."""
    return tensor_qmax(name, tensor, 6) > 0


@dataclass(frozen=True)
class QuantizedRows:
    codes: Tensor  # int8 (rows, cols), values in [-qmax, qmax]
    scales: Tensor  # float16 (rows,)


def row_quantiles(magnitudes: Tensor, quantiles: tuple[float, ...]) -> Tensor:
    """Per row of `magnitudes` (rows, cols), the given quantiles (rows, K), with
    torch.quantile's linear interpolation; one sort, much faster than torch.quantile on the
    CPU for many quantiles of large matrices."""
    ordered = magnitudes.sort(dim=1).values
    n = ordered.shape[1]
    out = []
    for q in quantiles:
        pos = q * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        out.append(ordered[:, lo] + (ordered[:, hi] - ordered[:, lo]) * frac)
    return torch.stack(out, dim=1)


def row_clips(w: Tensor, qmax: int) -> Tensor:
    """Per row of `w` (rows, cols), float32: the clip among CLIP_QUANTILES of |w| whose
    scale (rounded to float16, as stored) reconstructs the row with the least error."""
    levels = row_quantiles(w.abs(), CLIP_QUANTILES).clamp_min(1e-12)  # (rows, K)
    best_err = torch.full((w.shape[0],), float("inf"))
    best_clip = levels[:, 0]
    for k in range(levels.shape[1]):
        # Round the scale to float16 first: the error must be that of the stored scale.
        scale = (levels[:, k] / qmax).half().float().clamp_min(1e-12)
        q = torch.clamp(torch.round(w / scale[:, None]), -qmax, qmax)
        err = (q * scale[:, None] - w).square().sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_clip = torch.where(better, levels[:, k], best_clip)
    return best_clip


def row_steps(clips: Tensor, qmax: int, floor_unit: float) -> Tensor:
    """The codes' step of each row, float32: max(clip, floor_unit) / qmax, as float16 holds it."""
    return (torch.clamp_min(clips, floor_unit) / qmax).half().float().clamp_min(1e-12)


def reconstruction_scales(w: Tensor, codes: Tensor, steps: Tensor, shared: Tensor) -> Tensor:
    """Float16 scale of each row of `w` (rows, cols) for its `codes` taken at `steps`.

    The scale is the least-squares one for the codes (sum w*q / sum q^2): at the coarse steps
    a budget forces (about 1.25 std on the leader stack), the weights a code stands for sit
    nearer zero than its step, and restoring them at their centroid's scale cuts the squared
    error ~10% at the same codes, hence the same bytes. Rows in `shared` (those at the scale
    floor) get one scale fitted over all of them, so they still store one repeated value, as
    cheap to compress as the floor itself. Where float16 rounding makes the fit no better
    than the step, the step is kept: never more error than restoring at the step."""
    x, q = w.double(), codes.double()
    sums = [(x * q).sum(dim=1), (q * q).sum(dim=1), (x * x).sum(dim=1)]
    if bool(shared.any()):
        for s in sums:
            s[shared] = s[shared].sum()
    wq, qq, ww = sums
    step = steps.double()
    fit = torch.where(qq > 0, wq / qq.clamp_min(1e-300), step).half().double()

    def squared_error(scale: Tensor) -> Tensor:
        return ww - 2 * scale * wq + scale * scale * qq

    return torch.where(squared_error(fit) < squared_error(step), fit, step).half()


def quantize_with_clips(w: Tensor, clips: Tensor, qmax: int, floor_unit: float) -> QuantizedRows:
    """Codes of `w` (rows, cols) at step max(clip, floor_unit) / qmax, with the float16 scales
    that restore them best (`reconstruction_scales`)."""
    steps = row_steps(clips, qmax, floor_unit)
    codes = torch.clamp(torch.round(w / steps[:, None]), -qmax, qmax).to(torch.int8)
    scales = reconstruction_scales(w, codes, steps, clips <= floor_unit)
    return QuantizedRows(codes=codes, scales=scales)


def quantize_rows(weight: Tensor, bits: int, floor_unit: float = 0.0) -> QuantizedRows:
    """Symmetric per-row quantization to `bits` bits (codes in +-(2^(bits-1) - 1)), with the
    scale floor `floor_unit` / qmax (0: none)."""
    qmax = 2 ** (bits - 1) - 1
    w = weight.detach().float().reshape(weight.shape[0], -1)
    return quantize_with_clips(w, row_clips(w, qmax), qmax, floor_unit)


def dequantize_rows(q: QuantizedRows, shape: tuple[int, ...]) -> Tensor:
    return (q.codes.float() * q.scales.float()[:, None]).reshape(shape)


@dataclass(frozen=True)
class Encoded:
    """A state dict as the artifact stores it, before compression."""

    entries: list[dict]  # the header's tensor list
    payloads: list[bytes]
    floor_unit: float

    def raw(self) -> bytes:
        header = json.dumps(
            {"format": FORMAT_TAG, "floor_unit": self.floor_unit, "tensors": self.entries},
            sort_keys=True,
        ).encode()
        return struct.pack("<I", len(header)) + header + b"".join(self.payloads)


def encode_tensor(
    name: str, tensor: Tensor, q: QuantizedRows | None, qmax: int, offset: int
) -> tuple[dict, list[bytes]]:
    """(header entry, payload blobs) of one tensor: its codes and scales, or float16."""
    if q is not None:
        blobs, kind = [q.codes.numpy().tobytes(), q.scales.numpy().tobytes()], "q"
    else:
        blobs, kind = [tensor.half().numpy().tobytes()], "raw"
    sizes = [len(b) for b in blobs]
    entry = {"name": name, "shape": list(tensor.shape), "kind": kind, "offset": offset}
    return entry | {"sizes": sizes, "qmax": qmax}, blobs


def compress(raw: bytes, zstd_level: int) -> bytes:
    return zstandard.ZstdCompressor(level=zstd_level).compress(raw)


def serialize_model(
    state: dict[str, Tensor], bits: int, zstd_level: int, floor_unit: float = 0.0
) -> bytes:
    """Quantize and compress a state dict into the artifact's model bytes, at scale floor
    `floor_unit` (0: none; budget.py picks one for a byte budget)."""
    return compress(encode(prepare(state, bits), floor_unit).raw(), zstd_level)


class Prepared:
    """One state-dict entry with what does not depend on the scale floor: how it is stored
    and, for a quantized matrix, its rows and their clips.

    A row's clip only matters where it exceeds the floor (the scale is max(clip, floor) /
    qmax, and a clip is at most the row's max), so clips are searched lazily, for the rows
    whose max exceeds the floors asked for so far: on the leader stack under the cap almost
    every row is at the floor, and the search (a few passes over each row) is the slowest
    part of an export on a CPU.
    """

    def __init__(self, name: str, tensor: Tensor, qmax: int) -> None:
        self.name, self.tensor, self.qmax = name, tensor, qmax
        self.rows: Tensor | None = None  # float32 (rows, cols)
        if qmax:
            self.rows = tensor.float().reshape(tensor.shape[0], -1)
            self.row_max = self.rows.abs().amax(dim=1)
            self._clips = self.row_max.clone()
            self._searched = torch.zeros(self.rows.shape[0], dtype=torch.bool)

    def clips(self, floor_unit: float) -> Tensor:
        """Per-row clips, exact (as `row_clips`) for every row whose max exceeds the floor."""
        assert self.rows is not None
        todo = (self.row_max > floor_unit) & ~self._searched
        if bool(todo.any()):
            index = todo.nonzero().squeeze(1)
            self._clips[index] = row_clips(self.rows[index], self.qmax)
            self._searched[index] = True
        return self._clips

    def sample(self, max_codes: int) -> Prepared:
        """Every k-th row (at least `max_codes` codes), for size estimates."""
        assert self.rows is not None
        n_rows, cols = self.rows.shape
        step = max(1, n_rows * cols // max_codes)
        return Prepared(self.name, self.rows[::step], self.qmax)


def artifact_order(name: str) -> str:
    """Sort key of the artifact's entries: by name with the block index last, so the same
    kind of matrix sits together across layers ("blocks.attn.q.weight.0003"): similar
    statistics side by side compress ~1% smaller at zstd 19 on the leader stack than the
    plain name order, which alternates kinds (7.73 vs 7.80 MB at the records' floor)."""
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    return f"blocks.{match.group(2)}.{int(match.group(1)):04d}" if match else name


def prepare(state: dict[str, Tensor], bits: int) -> list[Prepared]:
    """Every entry of `state`, in the artifact's order (`artifact_order`)."""
    return [
        Prepared(name, state[name].detach().cpu(), tensor_qmax(name, state[name], bits))
        for name in sorted(state, key=artifact_order)
    ]


def quantize_prepared(item: Prepared, floor_unit: float) -> QuantizedRows | None:
    if item.rows is None:
        return None
    return quantize_with_clips(item.rows, item.clips(floor_unit), item.qmax, floor_unit)


def encode(prepared: list[Prepared], floor_unit: float) -> Encoded:
    entries, payloads, offset = [], [], 0
    for item in prepared:
        q = quantize_prepared(item, floor_unit)
        entry, blobs = encode_tensor(item.name, item.tensor, q, item.qmax, offset)
        entries.append(entry)
        payloads.extend(blobs)
        offset += sum(entry["sizes"])
    return Encoded(entries, payloads, floor_unit)


def deserialize_model(blob: bytes) -> dict[str, Tensor]:
    """The de-quantized float32 state dict stored in an artifact's model bytes."""
    raw = zstandard.ZstdDecompressor().decompress(blob)
    (header_len,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + header_len])
    if header.get("format") not in READABLE_TAGS:
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


def read_header(blob: bytes) -> dict:
    """The JSON header of an artifact's model bytes."""
    raw = zstandard.ZstdDecompressor().decompress(blob)
    (header_len,) = struct.unpack_from("<I", raw)
    return json.loads(raw[4 : 4 + header_len])


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
