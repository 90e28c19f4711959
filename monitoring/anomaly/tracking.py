"""From row scores to anomalies with a start and an end: open, extend, close.

The orchestrator runs every few minutes; it does not keep detectors alive between runs. Each run
replays a bounded warm-up window (three days by default: the detector's daily profile needs
three visits of each time of day) into fresh detectors, then scores only the rows after the
series' cursor (a service's own series and each replica's have their own). That keeps state
bounded and in the database (the cursor and the open anomaly), at the cost of re-reading the
window: about a second per series. A caller that keeps the detector (`TrackingResult.detector`)
feeds it only the new rows next time.

An anomaly opens on a row whose combined score reaches `open_score`. It stays open while some
metric of the service is still unusual (its own score at least `extend_score`), and closes once
none has been for `quiet`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitoring.anomaly.services import DetectorConfig, ServiceAnomalyDetector
from monitoring.samples import METRICS, Sample


@dataclass
class Episode:
    """An anomaly while it is tracked; `id` is its row id once stored."""

    start: datetime
    end: datetime
    score: float
    metrics: list[str]
    id: int | None = None
    closed: bool = False

    def extend(self, at: datetime, score: float, metrics: Sequence[str]) -> None:
        self.end = max(self.end, at)
        self.score = max(self.score, score)
        self.metrics += [m for m in metrics if m not in self.metrics]


@dataclass(frozen=True)
class TrackingConfig:
    open_score: float = 0.9
    extend_score: float = 0.6
    quiet: timedelta = timedelta(minutes=15)
    detector: DetectorConfig = field(default_factory=DetectorConfig)  # for fresh detectors


@dataclass
class TrackingResult:
    episodes: list[Episode] = field(default_factory=list)  # touched: the open one and new ones
    scored_until: datetime | None = None
    latest_score: float = 0.0
    rows_scored: int = 0
    # The detector after the replay: fed every row up to `scored_until`, so a caller that keeps
    # it can feed only the next rows instead of replaying the warm-up window again.
    detector: ServiceAnomalyDetector | None = None

    @property
    def opened(self) -> list[Episode]:
        return [e for e in self.episodes if e.id is None]


def sample_values(sample: Sample) -> Mapping[str, float]:
    return {metric: getattr(sample, metric) for metric in METRICS}


def track(
    samples: Sequence[Sample],
    scored_until: datetime | None,
    open_episode: Episode | None,
    config: TrackingConfig | None = None,
    detector: ServiceAnomalyDetector | None = None,
) -> TrackingResult:
    """Replays `samples` (time-ordered, one series: a service's or one replica's) and tracks
    anomalies after `scored_until`; `detector`, if given, is one already warmed up to it."""
    cfg = config or TrackingConfig()
    detector = detector or ServiceAnomalyDetector(cfg.detector)
    result = TrackingResult(scored_until=scored_until, detector=detector)
    current = open_episode
    if current is not None:
        result.episodes.append(current)
    for sample in samples:
        scored = detector.update(sample_values(sample), sample.timestamp.timestamp())
        if scored_until is not None and sample.timestamp <= scored_until:
            continue
        result.rows_scored += 1
        result.scored_until, result.latest_score = sample.timestamp, scored.score
        unusual = [m for m, s in scored.metric_scores.items() if s >= cfg.extend_score]
        if current is not None:
            if unusual or scored.score >= cfg.open_score:
                current.extend(sample.timestamp, scored.score, scored.metrics)
            elif sample.timestamp - current.end >= cfg.quiet:
                current.closed, current = True, None
        if current is None and scored.score >= cfg.open_score:
            metrics = list(scored.metrics) or [_strongest(scored.metric_scores)]
            current = Episode(sample.timestamp, sample.timestamp, scored.score, metrics)
            result.episodes.append(current)
    return result


def _strongest(scores: Mapping[str, float]) -> str:
    return max(scores, key=lambda name: scores[name])
