"""Anomaly detection for the AI Orchestrator: per metric, combined per service.

`MetricAnomalyDetector` (in `monitoring.anomaly.detector`) scores one series row by row.
`ServiceAnomalyDetector` keeps one per metric of a service and combines them into one score with
the metrics involved. `detect_files` (in `monitoring.anomaly.files`) scores `timestamp,value` files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from monitoring.anomaly.detector import (
    DetectorConfig,
    MetricAnomalyDetector,
    OnsetGate,
    surprise_to_score,
)
from monitoring.anomaly.files import DetectInputError, detect_files

__all__ = [
    "DetectInputError",
    "DetectorConfig",
    "MetricAnomalyDetector",
    "ServiceAnomalyDetector",
    "ServiceScore",
    "detect_files",
]


@dataclass(frozen=True)
class ServiceScore:
    """One service's score for one instant and the metrics that drive it, strongest first."""

    score: float
    metrics: tuple[str, ...]
    metric_scores: Mapping[str, float]


class ServiceAnomalyDetector:
    """One detector per metric of a service, combined into one score per update."""

    def __init__(self, config: DetectorConfig | None = None, involved_at: float = 0.6) -> None:
        self.config = config or DetectorConfig()
        self.involved_at = involved_at  # a metric whose own score reaches this is 'involved'
        self._detectors: dict[str, MetricAnomalyDetector] = {}
        self._gate = OnsetGate(self.config)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self._detectors)

    def update(self, values: Mapping[str, float], timestamp: float | None = None) -> ServiceScore:
        """Feed the metrics sampled at `timestamp`; metrics may be missing from some updates."""
        surprises: dict[str, float] = {}
        for name, value in values.items():
            detector = self._detectors.setdefault(name, MetricAnomalyDetector(self.config))
            detector.update(value, timestamp)
            surprises[name] = detector.last_surprise
        return self._combine(surprises)

    def _combine(self, surprises: dict[str, float]) -> ServiceScore:
        scale = self.config.score_scale
        metric_scores = {name: surprise_to_score(s, scale) for name, s in surprises.items()}
        # The strongest metric, corrected for having watched several (Bonferroni), so a service
        # with many metrics does not alert more often by chance than one with a single metric.
        strongest = max(surprises.values(), default=0.0)
        combined = max(0.0, strongest - math.log(max(len(self._detectors), 1)))
        involved = sorted(
            (name for name, score in metric_scores.items() if score >= self.involved_at),
            key=lambda name: -metric_scores[name],
        )
        score = surprise_to_score(self._gate.update(combined), scale)
        return ServiceScore(score, tuple(involved), metric_scores)
