"""Failure risk as a learned model: features, labels, the time split, fit, and its JSON state.

The question is "an SLO breach or incident within the next H minutes?". Each scored row (every
five minutes of a service's one-minute history) gets features from that row's past only:
NeuroWeaver's score (its prediction when the model was trained with one, else the share of the
last five minutes that met the objectives), the level, trend and projection of latency, errors
and memory against their objectives, how far each metric is from its last six hours (a z-score:
the anomaly scores), the strongest open anomaly the detector stored, and the time of day.

Labels come from labelled history: the incidents in the store (the simulator's ground truth and
those a user recorded) and the SLO breaches the stored metrics show. A histogram gradient
boosting classifier is fitted on the earlier part of the training days and calibrated
(isotonic) on the later part; its trees and calibration are exported to plain JSON, so that a
registered version loads without unpickling anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator

from monitoring.assess.failure import HAND_SET_RULE, FailureRisk, RiskFactor
from monitoring.neuroweaver.labels import ERROR_SLO_PERCENT, LATENCY_SLO_MS
from monitoring.samples import METRICS

MODEL_NAME: Final = "failure-risk"
STATE_FILE: Final = "state.json"
FORMAT: Final = 1
HAND_SET: Final = HAND_SET_RULE
SCORE_EVERY: Final = pd.Timedelta(minutes=5)
TREND_ROWS: Final = 60  # the hand-set rule's window (insights.RISK_WINDOW)
NOW_ROWS: Final = 5
BASELINE_ROWS: Final = 360  # the six hours an anomaly z-score is measured against
MERGE_GAP: Final = pd.Timedelta(minutes=5)  # breaches closer than this are one episode
OBJECTIVES: Final = {
    "network_latency": LATENCY_SLO_MS,
    "error_rate": ERROR_SLO_PERCENT,
    "memory_usage": 90.0,
}
# Below these shares of its objective a level says which service it is, not how close it is to
# failing: absolute memory (58% vs 45%) told the training services apart, and unseen services
# above the training ones' memory got a risk of 0.5-0.7 all day (docs/benchmarks.md).
OBJECTIVE_FLOORS: Final = {"network_latency": 0.5, "error_rate": 0.5, "memory_usage": 0.8}
FEATURES: Final = (
    "score",
    *(f"{m}_{k}" for m in OBJECTIVES for k in ("level", "rise", "projected")),
    *(f"{m}_z" for m in METRICS),
    "detector_score",
    "tod_sin",
    "tod_cos",
)
Interval = tuple[pd.Timestamp, pd.Timestamp]


class RiskTrainingError(ValueError):
    """The history cannot train a failure-risk model (too short, or one class only)."""


# --- features -----------------------------------------------------------------------------


def _rolling_line(y: pd.Series, horizon: int) -> tuple[pd.Series, pd.Series]:
    """The least-squares line over each row's last TREND_ROWS rows: its relative rise over
    `horizon` rows, as `failure.projected_rise` computes it, and where it will be then."""
    t = pd.Series(np.arange(len(y), dtype=float), index=y.index)
    roll = {"window": TREND_ROWS, "min_periods": 3}
    mean_t, mean_y = t.rolling(**roll).mean(), y.rolling(**roll).mean()
    cov = (t * y).rolling(**roll).mean() - mean_t * mean_y
    var = (t * t).rolling(**roll).mean() - mean_t**2
    slope = cov / var.where(var > 0)
    level = y.abs().rolling(**roll).mean().clip(lower=1e-9)
    rise = (slope * horizon / level).clip(-3.0, 3.0)
    projected = mean_y + slope * (t - mean_t + horizon)
    return rise, projected


def closeness(share: pd.Series, floor: float) -> pd.Series:
    """0 up to `floor` of the objective, 1 at it, capped at 3 (as the rule's objective factor)."""
    return ((share - floor) / (1 - floor)).clip(0.0, 3.0)


def observed_score(frame: pd.DataFrame) -> pd.Series:
    """The share of each row's last five minutes that met the latency and error objectives."""
    good = (frame["network_latency"] <= LATENCY_SLO_MS) & (frame["error_rate"] <= ERROR_SLO_PERCENT)
    return good.astype(float).rolling(NOW_ROWS, min_periods=1).mean()


def features(
    frame: pd.DataFrame,
    horizon: int,
    scores: pd.Series | None = None,
    detector: pd.Series | None = None,
) -> pd.DataFrame:
    """FEATURES at every row of one service's one-minute frame, from that row's past only.

    `scores` are NeuroWeaver's per-row predictions (their five-row mean is the feature; without
    them, the observed score); `detector` the strongest open anomaly's score at each row."""
    out = pd.DataFrame(index=frame.index)
    score = observed_score(frame) if scores is None else scores.rolling(NOW_ROWS, 1).mean()
    out["score"] = score
    for metric, limit in OBJECTIVES.items():
        y = frame[metric].astype(float)
        rise, projected = _rolling_line(y, horizon)
        level = y.rolling(NOW_ROWS, min_periods=1).mean()
        out[f"{metric}_level"] = closeness(level / limit, OBJECTIVE_FLOORS[metric])
        out[f"{metric}_rise"] = rise
        out[f"{metric}_projected"] = closeness(projected / limit, OBJECTIVE_FLOORS[metric])
    for metric in METRICS:
        y = frame[metric].astype(float)
        base = y.rolling(BASELINE_ROWS, min_periods=30)
        spread = base.std() + 0.01 * base.mean().abs() + 1e-6
        now = y.rolling(NOW_ROWS, min_periods=1).mean()
        out[f"{metric}_z"] = ((now - base.mean()) / spread).clip(-20.0, 20.0)
    out["detector_score"] = 0.0 if detector is None else detector.reindex(frame.index).fillna(0)
    hours = frame.index.hour + frame.index.minute / 60.0
    out["tod_sin"] = np.sin(2 * np.pi * hours / 24)
    out["tod_cos"] = np.cos(2 * np.pi * hours / 24)
    return out[list(FEATURES)].fillna(0.0)


# --- labels -------------------------------------------------------------------------------


def merge(intervals: Sequence[Interval], gap: pd.Timedelta = MERGE_GAP) -> list[Interval]:
    """Overlapping intervals, and those closer than `gap`, as one."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def breaches(frame: pd.DataFrame) -> list[Interval]:
    """The episodes of minutes in which any objective (latency, errors, memory) was missed."""
    missed = pd.Series(False, index=frame.index)
    for metric, limit in OBJECTIVES.items():
        missed |= frame[metric] > limit
    stamps = frame.index[missed.to_numpy()]
    return merge([(t, t + pd.Timedelta(minutes=1)) for t in stamps])


def events(frame: pd.DataFrame, incidents: Sequence[Interval]) -> list[Interval]:
    """What the model predicts, for one service: its incidents and its SLO breaches, merged."""
    return merge([*incidents, *breaches(frame)])


def labels(index: pd.DatetimeIndex, found: Sequence[Interval], horizon: int) -> np.ndarray:
    """1 where an event is under way at some minute of (t, t + horizon], else 0."""
    if not found:
        return np.zeros(len(index), dtype=int)
    starts = pd.DatetimeIndex([s for s, _ in found])
    ends = pd.DatetimeIndex([e for _, e in found])
    nxt = ends.searchsorted(index, side="right")  # the first event still running after t
    ahead = index + pd.Timedelta(minutes=horizon)
    has = nxt < len(found)
    out = np.zeros(len(index), dtype=int)
    out[has] = (starts[nxt[has]] <= ahead[has]).astype(int)
    return out


# --- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FittedRisk:
    """A calibrated classifier as plain data: trees, the isotonic map, the alarm threshold."""

    trees: list[dict[str, list[Any]]]
    baseline: float
    calibration_x: list[float]
    calibration_y: list[float]
    threshold: float
    horizon_minutes: int
    score_source: str  # "neuroweaver" (its predictions) or "observed"
    medians: dict[str, float]
    fitted_at: str
    features: tuple[str, ...] = FEATURES
    notes: dict[str, Any] = field(default_factory=dict)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The boosted trees' log-odds, as HistGradientBoostingClassifier.decision_function."""
        total = np.full(len(x), self.baseline)
        rows = np.arange(len(x))
        for tree in self.trees:
            feature, cut = np.asarray(tree["feature"]), np.asarray(tree["threshold"])
            left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
            leaf, miss = np.asarray(tree["leaf"], bool), np.asarray(tree["missing_left"], bool)
            node = np.zeros(len(x), dtype=int)
            while not leaf[node].all():
                value = x[rows, feature[node]]
                go_left = np.where(np.isnan(value), miss[node], value <= cut[node])
                node = np.where(leaf[node], node, np.where(go_left, left[node], right[node]))
            total += np.asarray(tree["value"])[node]
        return total

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of an event within the horizon, one per row of FEATURES."""
        probability = np.interp(
            self.raw(np.asarray(x, float)), self.calibration_x, self.calibration_y
        )
        return np.clip(probability, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "trees": self.trees,
            "baseline": self.baseline,
            "calibration": {"x": self.calibration_x, "y": self.calibration_y},
            "threshold": self.threshold,
            "horizon_minutes": self.horizon_minutes,
            "score_source": self.score_source,
            "medians": self.medians,
            "fitted_at": self.fitted_at,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedRisk:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown failure-risk state format {data.get('format')!r}")
        if tuple(data["features"]) != FEATURES:
            raise ValueError("the state's features are not this code's FEATURES")
        return cls(
            trees=list(data["trees"]),
            baseline=float(data["baseline"]),
            calibration_x=[float(v) for v in data["calibration"]["x"]],
            calibration_y=[float(v) for v in data["calibration"]["y"]],
            threshold=float(data["threshold"]),
            horizon_minutes=int(data["horizon_minutes"]),
            score_source=str(data["score_source"]),
            medians={k: float(v) for k, v in data["medians"].items()},
            fitted_at=str(data["fitted_at"]),
            notes=dict(data.get("notes", {})),
        )


def export_trees(model: HistGradientBoostingClassifier) -> list[dict[str, list[Any]]]:
    """Each boosting iteration's tree as lists (a binary model has one tree per iteration)."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append(
            {
                "feature": nodes["feature_idx"].astype(int).tolist(),
                "threshold": nodes["num_threshold"].astype(float).tolist(),
                "left": nodes["left"].astype(int).tolist(),
                "right": nodes["right"].astype(int).tolist(),
                "leaf": nodes["is_leaf"].astype(bool).tolist(),
                "missing_left": nodes["missing_go_to_left"].astype(bool).tolist(),
                "value": nodes["value"].astype(float).tolist(),
            }
        )
    return trees


def classifier() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=150,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    )


def fit(
    x: np.ndarray, y: np.ndarray, horizon: int, score_source: str, now: datetime | None = None
) -> tuple[FittedRisk, CalibratedClassifierCV]:
    """Boosting on the first three quarters of the rows (in time order), isotonic calibration
    on the last quarter (earlier, if that quarter would hold under a quarter of the events); the threshold is 0.5 until `with_threshold` sets the chosen one."""
    if len(np.unique(y)) < 2:
        raise RiskTrainingError("the training days hold no breach or incident, or nothing else")
    positives = np.flatnonzero(y)
    # The last quarter of the rows, or from the last quarter of the events if those come earlier:
    # the calibration needs events too.
    cut = min(int(len(y) * 0.75), int(positives[int(len(positives) * 0.75)]))
    if len(np.unique(y[:cut])) < 2 or len(np.unique(y[cut:])) < 2:
        raise RiskTrainingError("both parts of the training days need events and quiet rows")
    boosted = classifier().fit(x[:cut], y[:cut])
    calibrated = CalibratedClassifierCV(FrozenEstimator(boosted), method="isotonic")
    calibrated.fit(x[cut:], y[cut:])
    isotonic = calibrated.calibrated_classifiers_[0].calibrators[0]
    state = FittedRisk(
        trees=export_trees(boosted),
        baseline=float(np.ravel(boosted._baseline_prediction)[0]),
        calibration_x=[float(v) for v in isotonic.X_thresholds_],
        calibration_y=[float(v) for v in isotonic.y_thresholds_],
        threshold=0.5,
        horizon_minutes=horizon,
        score_source=score_source,
        medians={n: float(v) for n, v in zip(FEATURES, np.median(x, axis=0), strict=True)},
        fitted_at=(now or datetime.now(UTC)).isoformat(),
        notes={"fit_rows": cut, "calibration_rows": len(y) - cut},
    )
    return state, calibrated


def explain(state: FittedRisk, row: np.ndarray) -> list[RiskFactor]:
    """Each feature's part in one row's risk: how much lower the risk is with that feature at
    its training median, the rest unchanged (ranked, largest first)."""
    risk = float(state.predict(row[None, :])[0])
    probes = np.repeat(row[None, :], len(FEATURES), axis=0)
    for i, name in enumerate(FEATURES):
        probes[i, i] = state.medians.get(name, 0.0)
    without = state.predict(probes)
    factors = [
        RiskFactor(name, float(row[i]), risk - float(without[i]), f"{name} = {row[i]:.3g}")
        for i, name in enumerate(FEATURES)
    ]
    return sorted(factors, key=lambda f: f.contribution, reverse=True)


def pyfunc_signature() -> Any:
    """What the registered pyfunc takes (FEATURES) and answers (risk, alarm)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in FEATURES]),
        outputs=Schema([ColSpec("double", "risk"), ColSpec("boolean", "alarm")]),
    )


def load_version(version: str) -> FittedRisk:
    """One registered version's state; registry.ModelLoadError when it cannot be read."""
    from monitoring.neuroweaver import registry  # MLflow and torch: only where a version loads

    data = registry.load_state(MODEL_NAME, version, STATE_FILE)
    try:
        return FittedRisk.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise registry.ModelLoadError(f"{MODEL_NAME} version {version}: {exc}") from exc


def risk_now(
    state: FittedRisk, frame: pd.DataFrame, scores: pd.Series | None, detector_score: float
) -> tuple[float, list[RiskFactor]]:
    """The learned risk at a frame's last row, with each feature's part in it."""
    recent = frame.tail(BASELINE_ROWS + NOW_ROWS)
    use = scores if state.score_source == "neuroweaver" else None
    table = features(recent, state.horizon_minutes, use, None)
    row = table.iloc[-1].to_numpy(np.float64).copy()
    row[FEATURES.index("detector_score")] = detector_score
    factors = explain(state, row)
    return float(state.predict(row[None, :])[0]), factors


@dataclass(frozen=True)
class RiskModel:
    """A loaded version of failure-risk: its state and its version."""

    state: FittedRisk
    version: str

    @property
    def label(self) -> str:
        return f"{MODEL_NAME} v{self.version}"

    def assess(
        self, frame: pd.DataFrame, scores: pd.Series | None, detector_score: float
    ) -> FailureRisk:
        """The learned risk at the frame's last row, its top factors, and its threshold."""
        risk, factors = risk_now(self.state, frame, scores, detector_score)
        return FailureRisk(
            risk, self.state.horizon_minutes, tuple(factors[:8]), self.label, self.state.threshold
        )
