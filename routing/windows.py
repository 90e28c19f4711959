"""Bounded-memory statistics over time: decaying averages, percentile rings, bucketed counters.

Every method takes the current time explicitly, so callers decide where time comes from
(a real monotonic clock in production, a fake or simulated one in tests and benchmarks).
"""

from __future__ import annotations

import math
from collections import deque


class DecayingAverage:
    """An exponentially weighted average whose weights follow elapsed time, not sample count.

    Weighting by time makes the estimate independent of the request rate: a busy endpoint and
    a quiet one forget old samples equally fast.
    """

    __slots__ = ("tau", "_value", "_stamp")

    def __init__(self, tau: float) -> None:
        if tau <= 0:
            raise ValueError("tau must be positive")
        self.tau = tau
        self._value: float | None = None
        self._stamp = 0.0

    @property
    def empty(self) -> bool:
        return self._value is None

    @property
    def last_update(self) -> float:
        return self._stamp

    def add(self, sample: float, now: float) -> None:
        if self._value is None:
            self._value = sample
        else:
            w = math.exp(-max(now - self._stamp, 0.0) / self.tau)
            self._value = self._value * w + sample * (1.0 - w)
        self._stamp = now

    def jump_to(self, sample: float, now: float) -> None:
        """Set the value outright: peak-sensitive estimators react to a spike at once."""
        self._value = sample
        self._stamp = now

    def value(self, default: float = 0.0) -> float:
        return default if self._value is None else self._value

    def value_towards(self, target: float, now: float) -> float:
        """The value as it would have decayed towards ``target`` with no sample since the last.

        Stale knowledge fades into the prior, so an endpoint that stopped receiving traffic
        because it looked bad is eventually tried again.
        """
        if self._value is None:
            return target
        w = math.exp(-max(now - self._stamp, 0.0) / self.tau)
        return target + (self._value - target) * w


class PercentileRing:
    """The last ``size`` samples; percentiles are computed on read, which is rare."""

    __slots__ = ("_samples",)

    def __init__(self, size: int = 512) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: float) -> None:
        self._samples.append(sample)

    def percentile(self, q: float) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[nearest_rank(len(ordered), q)]


def nearest_rank(n: int, q: float) -> int:
    """Index of the ``q``-th percentile (0-100) in a sorted list of ``n`` items."""
    rank = math.ceil(q / 100.0 * n)
    return min(max(rank - 1, 0), n - 1)


class OutcomeRing:
    """Success/failure of the last ``size`` calls, with the failure count kept incrementally."""

    __slots__ = ("_flags", "_failures")

    def __init__(self, size: int = 100) -> None:
        self._flags: deque[bool] = deque(maxlen=size)
        self._failures = 0

    def __len__(self) -> int:
        return len(self._flags)

    @property
    def failures(self) -> int:
        return self._failures

    def add(self, failed: bool) -> None:
        maxlen = self._flags.maxlen
        if maxlen is not None and len(self._flags) == maxlen and self._flags[0]:
            self._failures -= 1
        self._flags.append(failed)
        self._failures += failed

    def rate(self) -> float:
        return self._failures / len(self._flags) if self._flags else 0.0

    def clear(self) -> None:
        self._flags.clear()
        self._failures = 0


class BucketCounter:
    """Events counted over a sliding time window, in fixed buckets so memory stays bounded."""

    __slots__ = ("_width", "_counts", "_epochs")

    def __init__(self, window: float, buckets: int = 10) -> None:
        if window <= 0 or buckets <= 0:
            raise ValueError("window and buckets must be positive")
        self._width = window / buckets
        self._counts = [0] * buckets
        self._epochs = [-1] * buckets

    def add(self, now: float, amount: int = 1) -> None:
        epoch = int(now // self._width)
        i = epoch % len(self._counts)
        if self._epochs[i] != epoch:
            self._epochs[i] = epoch
            self._counts[i] = 0
        self._counts[i] += amount

    def total(self, now: float) -> int:
        oldest = int(now // self._width) - len(self._counts) + 1
        return sum(c for c, e in zip(self._counts, self._epochs, strict=True) if e >= oldest)
