"""Input drift, pure: a model's reference profile (each feature's training quantiles) and the
population stability index (PSI) of live rows against it.

PSI sums (live share - reference share) * ln(live share / reference share) over the reference's
bins. The field's reading: under 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a shift worth
retraining for. The bins are the training deciles, so each holds a tenth of the training rows and
the index adapts to each feature's own scale; no constant is fitted to any series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
SMOOTHING = 1e-4  # a share of zero would make the logarithm infinite


@dataclass(frozen=True)
class FeatureProfile:
    """Inner bin edges (the training quantiles) and the training share of each bin."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]


def profile_of(frame: pd.DataFrame, columns: Sequence[str], bins: int = BINS) -> dict[str, Any]:
    """The JSON reference profile of `columns`: per feature its edges and shares, and the rows."""
    features = {}
    for column in columns:
        values = frame[column].to_numpy(np.float64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        features[column] = {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}
    return {"rows": len(frame), "features": features}


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Right-closed bins, as quantiles are: a value equal to an edge falls in the bin below it.
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def feature_profiles(profile: Mapping[str, Any]) -> dict[str, FeatureProfile]:
    """Reads a profile written by `profile_of`; ValueError for one that is not."""
    try:
        found = {
            name: FeatureProfile(tuple(map(float, f["edges"])), tuple(map(float, f["shares"])))
            for name, f in profile["features"].items()
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a reference profile: {exc!r}") from exc
    bad = [name for name, f in found.items() if len(f.shares) != len(f.edges) + 1]
    if bad:
        raise ValueError(f"not a reference profile: {bad} have shares that do not fit their edges")
    return found


def psi(reference: FeatureProfile, values: np.ndarray) -> float:
    """The population stability index of `values` against one feature's reference."""
    expected = np.asarray(reference.shares) + SMOOTHING
    actual = _shares(values, np.asarray(reference.edges)) + SMOOTHING
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class DriftCheck:
    """One model's inputs against its reference: the PSI of each feature and the verdict."""

    psi: dict[str, float]
    rows: int
    threshold: float

    @property
    def worst(self) -> str:
        return max(self.psi, key=self.psi.__getitem__)

    @property
    def drifted(self) -> bool:
        return bool(self.psi) and self.psi[self.worst] > self.threshold

    def evidence(self) -> dict[str, Any]:
        return {
            "psi": {k: round(v, 4) for k, v in self.psi.items()},
            "worst_feature": self.worst,
            "rows": self.rows,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def check(profile: Mapping[str, Any], live: pd.DataFrame, threshold: float) -> DriftCheck:
    """Each profiled feature's PSI over `live`; features `live` lacks are left out."""
    features = feature_profiles(profile)
    scores = {
        name: psi(reference, live[name].to_numpy(np.float64))
        for name, reference in features.items()
        if name in live.columns
    }
    return DriftCheck(scores, len(live), threshold)
