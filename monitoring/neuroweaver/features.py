"""The feature pipeline, saved beside the weights so that serving computes what training did."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from monitoring.samples import METRICS

# Latency and request counts span orders of magnitude; a log keeps one outlier from
# dominating the scale of the rest.
LOG_FEATURES: tuple[str, ...] = ("network_latency", "request_count")


@dataclass(frozen=True)
class FeaturePipeline:
    """log1p on heavy-tailed metrics, then standardisation with the training set's statistics."""

    means: list[float]
    scales: list[float]
    features: tuple[str, ...] = METRICS

    @classmethod
    def fit(cls, raw: np.ndarray) -> FeaturePipeline:
        logged = _log_columns(raw)
        scales = logged.std(axis=0)
        scales[scales < 1e-9] = 1.0
        return cls(means=logged.mean(axis=0).tolist(), scales=scales.tolist())

    def transform(self, raw: np.ndarray) -> np.ndarray:
        logged = _log_columns(np.asarray(raw, dtype=np.float64))
        scaled = (logged - np.asarray(self.means)) / np.asarray(self.scales)
        return scaled.astype(np.float32)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "features": list(self.features), "log_features": list(LOG_FEATURES)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeaturePipeline:
        if list(data.get("features", [])) != list(METRICS):  # type: ignore[call-overload]
            raise ValueError(f"incompatible feature list {data.get('features')}")
        return cls(means=list(data["means"]), scales=list(data["scales"]))  # type: ignore[call-overload]


def _log_columns(raw: np.ndarray) -> np.ndarray:
    out = np.array(raw, dtype=np.float64, copy=True)
    for name in LOG_FEATURES:
        column = METRICS.index(name)
        out[:, column] = np.log1p(np.maximum(out[:, column], 0.0))
    return out
