"""Fit the artifact to a byte budget: the finest quantization whose compressed model fits.

The challenge caps code bytes + compressed model bytes at 16,000,000. The records hand-tune
their export (a scale floor of 1/31 for int6, 1/127 for int8, lzma); an export with no floor
costs about 5.3 bits a weight at int6 whatever the weights' scale (18.5 MB on the leader
stack, over the cap). Here the scale floor (`floor_unit`, export.py) is searched: the
smallest floor whose artifact fits `budget_bytes` (by default the cap minus the code bytes).
At equal bytes a uniform step is what minimises the summed squared error of entropy-coded
uniform quantizers (equal slopes of rate and distortion), so raising one floor for every
matrix, rather than each row's clip, spends the bytes where they lower the error most.

The search estimates sizes from the codes' order-0 entropy, calibrated by real compressions
at the configured zstd level (bytes per entropy byte vary with the level: at ~1.5 bits a
code, level 3 takes ~1.3x the entropy, level 19 ~1.06x, lzma -6 as the records use ~1.11x),
so the bytes never exceed the budget and little of it is left unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from jepardy.trainer.export import (
    Prepared,
    compress,
    dequantize_rows,
    encode,
    prepare,
    quantize_prepared,
)

BISECTION_STEPS = 24  # on log(floor_unit): a relative precision of about 1e-4
CALIBRATION_ROUNDS = 4
AIM = 0.998  # of the budget: the estimate's target, leaving room for its error
# The last, finer try's target: calibrated on a real compression at a floor ~0.1% away, the
# estimate's error there is ~1e-4 (bytes left unused cost error: 0.2% of the bytes is ~0.5%
# of the round-trip error at ~1.8 bits a weight).
FINAL_AIM = 0.9996


class BudgetError(ValueError):
    """Even the coarsest quantization does not fit the byte budget."""


@dataclass(frozen=True)
class FittedExport:
    blob: bytes  # the artifact's model bytes
    floor_unit: float  # the scale floor chosen, in units of 1/qmax (0: none needed)
    budget_bytes: int
    roundtrip_mse: float  # mean squared error of the de-quantized weights, over all entries
    compressions: int  # how many real compressions the search took

    @property
    def model_bytes(self) -> int:
        return len(self.blob)


# Rows of each matrix the size estimate reads (every k-th row, at least this many codes):
# the estimate is calibrated against a real compression anyway, and reading all 27 M codes
# of the leader stack at every bisection step would take minutes on a CPU.
ESTIMATE_SAMPLE_CODES = 1 << 17


@dataclass(frozen=True)
class SizeModel:
    """What the size estimate reads: a sample of every quantized matrix, with its size."""

    matrices: list[tuple[Prepared, int, int]]  # (sample, numel, rows) of the whole matrix
    raw_bytes: int  # the float16 entries

    @classmethod
    def of(cls, prepared: list[Prepared]) -> SizeModel:
        matrices, raw_bytes = [], 0
        for item in prepared:
            if item.rows is None:
                raw_bytes += 2 * item.tensor.numel()
            else:
                sample = item.sample(ESTIMATE_SAMPLE_CODES)
                matrices.append((sample, item.rows.numel(), item.rows.shape[0]))
        return cls(matrices, raw_bytes)

    def estimated_bytes(self, floor_unit: float) -> float:
        """Order-0 entropy of every quantized matrix's codes (from its sample rows), plus its
        float16 scales and the float16 entries: what an ideal entropy coder would need."""
        total = float(self.raw_bytes)
        for sample, numel, rows in self.matrices:
            q = quantize_prepared(sample, floor_unit)
            assert q is not None
            counts = torch.bincount(q.codes.flatten().to(torch.int64) + 128, minlength=256)
            p = counts[counts > 0].double() / q.codes.numel()
            total += float(-(p * p.log2()).sum()) * numel / 8 + 2 * rows
        return total


def roundtrip_mse(prepared: list[Prepared], floor_unit: float) -> float:
    """Mean over every element of the state of (restored - original)^2, float16 entries
    included (their error is float16's rounding)."""
    squared, count = 0.0, 0
    for item in prepared:
        original = item.tensor.float()
        q = quantize_prepared(item, floor_unit)
        if q is None:
            restored = original.half().float()
        else:
            restored = dequantize_rows(q, tuple(original.shape))
        squared += float((restored - original).double().square().sum())
        count += original.numel()
    return squared / max(count, 1)


def smallest_fitting_floor(model: SizeModel, limit_bytes: float) -> float:
    """The smallest floor_unit whose estimated bytes are at most `limit_bytes` (bisection on
    its logarithm; bytes fall as the floor rises); 0 when no floor is needed. BudgetError
    when no floor fits."""
    if model.estimated_bytes(0.0) <= limit_bytes:
        return 0.0
    high = 1.0
    while model.estimated_bytes(high) > limit_bytes:
        high *= 4.0
        if high > 1e6:  # every code is 0 long before: only scales and float16 remain
            raise BudgetError(f"no quantization fits {limit_bytes:.0f} bytes")
    low = high / 2**20
    if model.estimated_bytes(low) <= limit_bytes:
        return low
    for _ in range(BISECTION_STEPS):
        mid = math.sqrt(low * high)
        if model.estimated_bytes(mid) <= limit_bytes:
            high = mid
        else:
            low = mid
    return high


def fit_export(
    state: dict[str, Tensor], bits: int, zstd_level: int, budget_bytes: int
) -> FittedExport:
    """The artifact of `state` at the smallest scale floor that fits `budget_bytes`.

    The estimate aims a hair under the budget; each real compression re-calibrates real
    bytes per estimated byte, until a blob fits. If it fits with room to spare, one finer
    floor is tried, aimed closer to the budget (FINAL_AIM), and kept if it fits."""
    prepared = prepare(state, bits)
    model = SizeModel.of(prepared)
    ratio, compressions = 1.0, 0

    def attempt(floor: float) -> bytes:
        nonlocal compressions
        compressions += 1
        return compress(encode(prepared, floor).raw(), zstd_level)

    floor = smallest_fitting_floor(model, budget_bytes * AIM)
    fast = attempt(floor)
    for _ in range(CALIBRATION_ROUNDS):
        if len(fast) <= budget_bytes:
            break
        ratio = len(fast) / model.estimated_bytes(floor)
        floor = max(floor * 1.001, smallest_fitting_floor(model, budget_bytes * AIM / ratio))
        fast = attempt(floor)
    while len(fast) > budget_bytes:  # the estimate kept missing: step up until it fits
        floor = max(floor * 1.02, 1e-6)
        if floor > 1e6:
            raise BudgetError(f"no quantization fits {budget_bytes} bytes")
        fast = attempt(floor)
    if floor > 0 and len(fast) < budget_bytes * FINAL_AIM:
        ratio = len(fast) / model.estimated_bytes(floor)
        finer = smallest_fitting_floor(model, budget_bytes * FINAL_AIM / ratio)
        if finer < floor:
            blob = attempt(finer)
            if len(blob) <= budget_bytes:
                floor, fast = finer, blob
    return FittedExport(fast, floor, budget_bytes, roundtrip_mse(prepared, floor), compressions)
