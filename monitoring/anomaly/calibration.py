"""Turns any stream of 'bigger is stranger' features into surprise, using only the past.

Each feature of the detector lives on its own scale (bytes, percent, a spread ratio), so none of
them can be thresholded directly. A `TailCalibrator` keeps a bounded window of the feature's past
values and answers: how unlikely is a value at least this large, given that window? The answer is
a surprise, -ln(p), which is comparable across features and across series, so one global threshold
(the one NAB's scorer picks) means the same thing everywhere.

Rare values are forgotten sooner than ordinary ones: a value whose own surprise was at least
`rare_surprise` leaves the window after `rare_memory` rows instead of `capacity`. Otherwise one
anomaly sits among the top of the window for its whole length and makes the next one of similar
size look ordinary (at rank k of n it can be no rarer than k in n); a few days later, the next
event is judged against the series' normal behaviour again, not against the last incident.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque

MAX_SURPRISE = 200.0


class TailCalibrator:
    """Empirical tail probability of a feature against its last `capacity` values."""

    def __init__(
        self,
        capacity: int = 4000,
        min_history: int = 60,
        tail_fraction: float = 0.1,
        rare_surprise: float = math.inf,
        rare_memory: int | None = None,
    ):
        self.capacity = capacity
        self.min_history = min_history
        self.tail_fraction = tail_fraction
        self.rare_surprise = rare_surprise
        # Only meaningful below capacity (the window forgets everything by then anyway).
        self.rare_memory = capacity if rare_memory is None else rare_memory
        # Arrival order, to know which value leaves the window; None once forgotten early.
        self._ring: list[float | None] = []
        self._next = 0
        self._sorted: list[float] = []  # the values still remembered, sorted, for rank queries
        self._rows = 0
        self._rare: deque[tuple[int, int, float]] = deque()  # (row it leaves at, ring slot, value)

    def __len__(self) -> int:
        return len(self._sorted)

    def surprise(self, x: float) -> float:
        """-ln P(feature >= x) under the past window; then x joins the window."""
        out = self._surprise(x) if len(self._sorted) >= self.min_history else 0.0
        slot = self._learn(x)
        self._rows += 1
        if out >= self.rare_surprise and self.rare_memory < self.capacity:
            self._rare.append((self._rows + self.rare_memory, slot, x))
        self._forget_rare()
        return out

    def _forget_rare(self) -> None:
        rare = self._rare
        while rare and rare[0][0] <= self._rows:
            _, slot, value = rare.popleft()
            if self._ring[slot] is not None:  # still this value: rare_memory < capacity
                self._ring[slot] = None
                del self._sorted[bisect_left(self._sorted, value)]

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

    def _learn(self, x: float) -> int:
        """Adds x to the window; returns its slot in the ring."""
        if len(self._ring) < self.capacity:
            slot = len(self._ring)
            self._ring.append(x)
        else:
            slot = self._next
            leaving = self._ring[slot]
            self._ring[slot] = x
            self._next = (slot + 1) % self.capacity
            if leaving is not None:
                del self._sorted[bisect_left(self._sorted, leaving)]
        insort(self._sorted, x)
        return slot
