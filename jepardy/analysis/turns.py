"""The turns of a curve and the verdict they make (study.md, method 3).

A turn counts only when the curve moves away from it by more than the noise, in both
directions: the turns are found as a zigzag with that threshold, the running extreme becoming
a turn once the curve has moved from it by more than the noise. Verdict: "monotonic" (at most
one leg, a flat curve included), "single-minimum" (down then up), otherwise "non-monotonic",
listing the minima. The noise itself is curves.py's (`curve_noise`).
"""

from __future__ import annotations

import numpy as np

from jepardy.analysis import render

MONOTONIC = "monotonic"
SINGLE_MINIMUM = "single-minimum"
NON_MONOTONIC = "non-monotonic"


def zigzag(means: np.ndarray, threshold: np.ndarray) -> list[int]:
    """Indices of the turns of a curve: its starting extreme, each point where it changes
    direction by more than `threshold[i, j]`, and its final extreme. Empty when the curve
    never moves by more than the noise (flat); two entries for a monotonic curve."""
    lo = hi = 0  # running extremes before the first confirmed move
    trend = 0  # +1 rising, -1 falling, 0 not yet known
    pivots: list[int] = []
    cand = 0
    for i in range(1, len(means)):
        m = means[i]
        if trend == 0:
            if m - means[lo] > threshold[lo, i]:
                trend, pivots, cand = 1, [lo], i
            elif means[hi] - m > threshold[hi, i]:
                trend, pivots, cand = -1, [hi], i
            else:
                lo = i if m < means[lo] else lo
                hi = i if m > means[hi] else hi
        elif trend * (m - means[cand]) > 0:
            cand = i  # a new running extreme; on a tie the first stays, as np.argmin picks
        elif abs(m - means[cand]) > threshold[cand, i]:
            pivots.append(cand)
            trend, cand = -trend, i
    return [*pivots, cand] if trend else []


def verdict_of(means: np.ndarray, pivots: list[int]) -> tuple[str, list[int], list[int]]:
    """(verdict, minima, interior maxima) from the zigzag's turns."""
    if len(pivots) <= 2:
        minima = [] if not pivots else [min(pivots, key=lambda i: means[i])]
        return MONOTONIC, minima, []
    minima, maxima = [], []
    for k, i in enumerate(pivots):
        neighbours = [means[j] for j in (pivots[k - 1 : k] + pivots[k + 1 : k + 2])]
        if all(means[i] < other for other in neighbours):
            minima.append(i)
        elif 0 < k < len(pivots) - 1:
            maxima.append(i)
    falling_first = means[pivots[1]] < means[pivots[0]]
    verdict = SINGLE_MINIMUM if len(pivots) == 3 and falling_first else NON_MONOTONIC
    return verdict, minima, maxima


def verdict_text(verdict: str, minima: np.ndarray, flat: bool) -> str:
    """The verdict as a report says it, with the minima (`flat`: no turn at all)."""
    where = ", ".join(render.format_number(v) for v in minima)
    if flat:
        return f"{MONOTONIC}: flat within the noise"
    if verdict == MONOTONIC:
        return f"{MONOTONIC}: lowest at {where}"
    label = "minimum" if len(minima) == 1 else f"{len(minima)} minima"
    return f"{verdict}: {label} at {where}"
