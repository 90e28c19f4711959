"""Turns any stream of 'bigger is stranger' features into surprise, using only the past.

Each feature of the detector lives on its own scale (bytes, percent, a spread ratio), so none of
them can be thresholded directly. A `TailCalibrator` keeps a bounded window of the feature's past
values and answers: how unlikely is a value at least this large, given that window? The answer is
a surprise, -ln(p), which is comparable across features and across series, so one global threshold
(the one NAB's scorer picks) means the same thing everywhere.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

MAX_SURPRISE = 200.0


class TailCalibrator:
    """Empirical tail probability of a feature against its last `capacity` values."""

    def __init__(self, capacity: int = 4000, min_history: int = 60, tail_fraction: float = 0.1):
        self.capacity = capacity
        self.min_history = min_history
        self.tail_fraction = tail_fraction
        self._ring: list[float] = []  # arrival order, to know which value leaves the window
        self._next = 0
        self._sorted: list[float] = []  # the same values sorted, for rank queries

    def __len__(self) -> int:
        return len(self._sorted)

    def surprise(self, x: float) -> float:
        """-ln P(feature >= x) under the past window; then x joins the window."""
        out = self._surprise(x) if len(self._sorted) >= self.min_history else 0.0
        self._learn(x)
        return out

    def _surprise(self, x: float) -> float:
        history = self._sorted
        n = len(history)
        top = history[-1]
        if x <= top:
            # Inside the seen range, counting is exact and assumes no shape: a daily jump that
            # happened a dozen times is only as rare as a dozen in n.
            at_least = n - bisect_left(history, x)
            return math.log((n + 1) / (at_least + 1))
        return min(MAX_SURPRISE, math.log(n + 1) + (x - top) / self._tail_scale(top))

    def _tail_scale(self, top: float) -> float:
        # Beyond the maximum there is nothing to count, so extrapolate with an exponential tail
        # whose scale is the mean excess of the top values (peaks over threshold): how far beyond
        # the maximum counts as far depends on how spread the series' own extremes are.
        history = self._sorted
        m = max(int(len(history) * self.tail_fraction), 5)
        threshold = history[-m]
        scale = sum(history[-m:]) / m - threshold
        return scale if scale > 0 else 1e-12 * (1.0 + abs(top))

    def _learn(self, x: float) -> None:
        if len(self._ring) < self.capacity:
            self._ring.append(x)
        else:
            leaving = self._ring[self._next]
            self._ring[self._next] = x
            self._next = (self._next + 1) % self.capacity
            del self._sorted[bisect_left(self._sorted, leaving)]
        insort(self._sorted, x)
