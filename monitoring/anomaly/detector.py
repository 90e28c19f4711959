"""A streaming anomaly detector for one metric series.

Each row is turned into a few features, each sensitive to one kind of anomaly:
- level: a short-term mean drifting from the long-term mean (shifts, ramps);
- volatility: the recent size of row-to-row changes (bursts, spikes, flapping);
- deviation: how far the value is from the long-term mean (outliers);
- time of day: how far the smoothed value is from what this time of day usually looks like,
  both as is and in units of how far it usually strays at that time of day (a quiet hour that
  moves a little and a busy hour that moves a lot are both news).

A `TailCalibrator` per feature turns it into a surprise (-ln p) against that feature's own past,
so the parameters adapt to each series without tuning. The row's surprise is the largest one,
corrected for having looked at several features. An `OnsetGate` then keeps only the onset of an
event: NAB (and an on-call engineer) rewards the first alert of an anomaly and charges every
repeat outside it.

Memory per series is bounded by the calibrators' windows, whatever the
length of the series. Only rows up to the current one are ever used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitoring.anomaly.calibration import TailCalibrator

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class DetectorConfig:
    """The few structural constants; none of them is meant to be tuned per series."""

    history: int = 4000  # rows each calibrator remembers (two weeks of 5-minute samples)
    min_history: int = 60  # rows before a calibrator dares to call anything rare
    fast_alpha: float = 0.25  # short-term mean: about the last 4 rows
    slow_alpha: float = 1 / 64  # long-term mean: about the last 64 rows
    volatility_alpha: float = 0.1
    day_bins: int = 48  # half-hour slots of the day for the time-of-day profile
    profile_alpha: float = 0.1
    profile_min_visits: int = 3  # a slot must be seen a few times before it is an expectation
    onset_decay: float = 0.1  # surprise (nats) the onset gate forgets per quiet row
    onset_quiet: float = 2.0  # a row below this surprise (nats) is quiet: the event may be over
    rare_surprise: float = 10.0  # a feature value this surprising (nats) is forgotten sooner
    rare_memory: int = 500  # rows a rare value stays in its calibrator (vs `history`)
    onset_cap: float = 30.0  # so that one huge event does not mute the series for too long
    score_scale: float = 10.0  # surprise that maps to a score of 1 - 1/e


class DailyProfile:
    """Smoothed value expected at each time of day, and how far it usually strays from it.

    Each slot of the day keeps a mean and a mean absolute deviation, both learnt from the days
    seen so far. The deviation returned is in units of the slot's own spread: a busy hour that
    always swings widely is not news when it swings, a quiet hour that suddenly moves is.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self._config = config
        self._mean = [0.0] * config.day_bins
        self._spread = [0.0] * config.day_bins
        self._visits = [0] * config.day_bins

    def deviation(self, x: float, timestamp: float | None) -> tuple[float, float]:
        """(|x - expected|, that / usual spread) for this slot (0 while unknown), then learn x."""
        if timestamp is None:
            return 0.0, 0.0
        cfg = self._config
        slot = int((timestamp % SECONDS_PER_DAY) / SECONDS_PER_DAY * cfg.day_bins)
        visits = self._visits[slot]
        mean = self._mean[slot]
        distance = abs(x - mean)
        out = (0.0, 0.0)
        if visits >= cfg.profile_min_visits:
            # The floor keeps a perfectly repeating series finite (relative to its magnitude).
            out = (distance, distance / (self._spread[slot] + 1e-9 + 1e-6 * abs(mean)))
        if visits >= 1:
            alpha = 1.0 if visits == 1 else cfg.profile_alpha
            self._spread[slot] += (distance - self._spread[slot]) * alpha
        self._mean[slot] += (x - mean) * (1.0 if visits == 0 else cfg.profile_alpha)
        self._visits[slot] = visits + 1
        return out


class OnsetGate:
    """Passes a surprise only when it beats the record of the current event.

    The record only decays on quiet rows: while the series stays remarkable the event is still
    going on, however its surprise wobbles (a long deviation seen through a time-of-day profile
    jumps at each slot change, then fades as the slot adapts), and a wobble is not a new event.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self._config = config
        self._record = 0.0

    def update(self, surprise: float) -> float:
        cfg = self._config
        record = self._record
        decay = cfg.onset_decay if surprise < cfg.onset_quiet else 0.0
        self._record = max(surprise, min(record, cfg.onset_cap) - decay)
        return surprise if surprise > record else 0.0


def surprise_to_score(surprise: float, scale: float) -> float:
    """Monotone map of surprise (nats, >= 0) into [0, 1)."""
    return 1.0 - math.exp(-surprise / scale)


class MetricAnomalyDetector:
    """Streaming detector for one series: `update(value, timestamp)` returns a score in [0, 1]."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        cfg = self.config
        self.rows = 0
        self._fast = self._slow = self._volatility = 0.0
        self._previous: float | None = None
        self._profile = DailyProfile(cfg)
        self._calibrators = [
            TailCalibrator(
                cfg.history,
                cfg.min_history,
                rare_surprise=cfg.rare_surprise,
                rare_memory=cfg.rare_memory,
            )
            for _ in range(5)
        ]
        self._gate = OnsetGate(cfg)
        self.last_surprise = 0.0  # before the onset gate, for combining metrics of one service

    def update(self, value: float, timestamp: float | None = None) -> float:
        """Score one row from this row and the ones before it; timestamp in epoch seconds."""
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value}")
        surprises = [
            calibrator.surprise(feature)
            for calibrator, feature in zip(
                self._calibrators, self._features(value, timestamp), strict=True
            )
        ]
        # The best of k features is surprising by chance k times as often (Bonferroni).
        self.last_surprise = max(0.0, max(surprises) - math.log(len(surprises)))
        self.rows += 1
        return surprise_to_score(self._gate.update(self.last_surprise), self.config.score_scale)

    def _features(self, x: float, timestamp: float | None) -> tuple[float, ...]:
        cfg = self.config
        if self._previous is None:
            self._previous = self._fast = self._slow = x
        self._volatility += (abs(x - self._previous) - self._volatility) * cfg.volatility_alpha
        self._previous = x
        self._fast += (x - self._fast) * cfg.fast_alpha
        self._slow += (x - self._slow) * cfg.slow_alpha
        return (
            abs(self._fast - self._slow),
            self._volatility,
            abs(x - self._slow),
            *self._profile.deviation(self._fast, timestamp),
        )

    def buffer_sizes(self) -> dict[str, int]:
        """Sizes of the structures that grow with history, to check that they stay capped."""
        return {f"calibrator_{i}": len(c) for i, c in enumerate(self._calibrators)}
