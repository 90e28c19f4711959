"""One failure-risk training. The training set: scored rows from labelled history, with the hand-set rule's
risk on the same rows, and the time split (train on the earlier days, choose the alarm
threshold on the next part, report on the last)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from monitoring.assess.failure import ServiceSignals, failure_risk
from monitoring.assess.failure_alarms import AlarmScore, choose_threshold, score
from monitoring.assess.failure_model import (
    FEATURES,
    SCORE_EVERY,
    TREND_ROWS,
    FittedRisk,
    Interval,
    RiskTrainingError,
    events,
    features,
    fit,
    labels,
)
from monitoring.samples import METRICS

Predictor = Callable[[np.ndarray], np.ndarray]
# The names the hand-set rule gives the metrics it projects (insights.RISK_COLUMNS).
RULE_COLUMNS = {"network_latency": "latency", "error_rate": "error_rate", "memory_usage": "memory"}
TRAIN_SHARE, VALIDATION_SHARE = 0.6, 0.2  # the test part is the rest, the last days


@dataclass(frozen=True)
class History:
    """One service's one-minute rows (UTC index, METRICS), its incidents and open anomalies."""

    frame: pd.DataFrame
    incidents: Sequence[Interval] = ()
    anomalies: Sequence[tuple[pd.Timestamp, pd.Timestamp, float]] = ()


def detector_series(index: pd.DatetimeIndex, anomalies: Sequence[tuple]) -> pd.Series:
    """The strongest stored anomaly open at each row (0 when none)."""
    out = pd.Series(0.0, index=index)
    for start, end, strength in anomalies:
        inside = (index >= start) & (index <= end)
        out[inside] = np.maximum(out[inside], float(strength))
    return out


def rule_risks(
    frame: pd.DataFrame,
    at: pd.DatetimeIndex,
    scores: pd.Series | None,
    detector: pd.Series,
    horizon: int,
) -> np.ndarray:
    """The hand-set rule at each scored row, as the cycle runs it: the last hour's trends,
    NeuroWeaver's score when there is a model, the open anomaly, the objectives."""
    from monitoring.assess.insights import OBJECTIVES  # the rule's objectives, as production's

    positions = frame.index.get_indexer(at)
    values = {name: frame[column].to_numpy(float) for column, name in RULE_COLUMNS.items()}
    smooth = None if scores is None else scores.rolling(5, 1).mean().to_numpy()
    out = np.empty(len(at))
    for i, end in enumerate(positions):
        first = max(0, end - TREND_ROWS + 1)
        strength = float(detector.iloc[end])
        signals = ServiceSignals(
            performance_score=None if smooth is None else float(smooth[end]),
            metrics={name: v[first : end + 1] for name, v in values.items()},
            open_anomalies=int(strength > 0),
            max_anomaly_score=strength,
            objectives=OBJECTIVES,
        )
        out[i] = failure_risk(signals, horizon).risk
    return out


def service_rows(
    service: str, history: History, horizon: int, predictor: Predictor | None = None
) -> pd.DataFrame:
    """Every fifth minute after the first hour with a full horizon ahead: features, label and
    the hand-set rule's risk."""
    frame = history.frame.sort_index()
    frame = frame[~frame.index.duplicated()]
    scores = None
    if predictor is not None:
        scores = pd.Series(predictor(frame[list(METRICS)].to_numpy(np.float64)), frame.index)
    detector = detector_series(frame.index, history.anomalies)
    table = features(frame, horizon, scores, detector)
    stamps = frame.index[TREND_ROWS:]
    last = frame.index.max() - pd.Timedelta(minutes=horizon)
    at = stamps[(stamps.floor(SCORE_EVERY) == stamps) & (stamps <= last)]
    rows = table.loc[at].copy()
    rows.insert(0, "timestamp", at)
    rows.insert(0, "service", service)
    rows["label"] = labels(at, events(frame, history.incidents), horizon)
    rows["rule"] = rule_risks(frame, at, scores, detector, horizon)
    return rows.reset_index(drop=True)


def build(
    histories: Mapping[str, History], horizon: int, predictor: Predictor | None = None
) -> pd.DataFrame:
    """All services' scored rows, in time order."""
    parts = [service_rows(s, h, horizon, predictor) for s, h in sorted(histories.items())]
    parts = [p for p in parts if not p.empty]
    if not parts:
        raise RiskTrainingError("no service has an hour of history with a horizon after it")
    return pd.concat(parts).sort_values(["timestamp", "service"]).reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    """The boundaries: train < validation_start <= validation < test_start <= test."""

    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp

    def parts(self, rows: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, ...]:
        """Train (without rows whose label looks into validation), validation, test."""
        t = rows["timestamp"]
        reach = t + pd.Timedelta(minutes=horizon)
        train = rows[reach < self.validation_start]
        validation = rows[(t >= self.validation_start) & (reach < self.test_start)]
        return train, validation, rows[t >= self.test_start]


def split_by_time(rows: pd.DataFrame) -> Split:
    first, last = rows["timestamp"].min(), rows["timestamp"].max()
    span = last - first
    if span < pd.Timedelta(hours=6):
        raise RiskTrainingError(f"{span} of scored history; at least 6 hours are needed")
    return Split(first + span * TRAIN_SHARE, first + span * (TRAIN_SHARE + VALIDATION_SHARE), last)


def matrix(rows: pd.DataFrame) -> np.ndarray:
    return rows[list(FEATURES)].to_numpy(np.float64)


# --- one training -------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    """A fitted candidate and the hand-set rule, each judged on the same test days."""

    state: FittedRisk
    rows: pd.DataFrame
    split: Split
    events: dict[str, list[Interval]]
    candidate: AlarmScore
    rule: AlarmScore
    rule_threshold: float

    def part(self, name: str) -> pd.DataFrame:
        train, validation, test = self.split.parts(self.rows, self.state.horizon_minutes)
        return {"train": train, "validation": validation, "test": test}[name]


def all_events(histories: Mapping[str, History]) -> dict[str, list[Interval]]:
    return {s: events(h.frame.sort_index(), h.incidents) for s, h in histories.items()}


def train(
    histories: Mapping[str, History],
    horizon: int,
    predictor: Predictor | None = None,
    score_source: str = "observed",
) -> Trained:
    """Fit on the earlier days, choose both thresholds on validation, score both on test."""
    rows = build(histories, horizon, predictor)
    split = split_by_time(rows)
    train_rows, validation, test = split.parts(rows, horizon)
    if validation.empty or test.empty:
        raise RiskTrainingError("the history is too short for a validation and a test part")
    found = all_events(histories)
    state, _ = fit(matrix(train_rows), train_rows["label"].to_numpy(int), horizon, score_source)
    learned = state.predict(matrix(validation))
    state = replace(state, threshold=choose_threshold(validation, learned, found, horizon))
    rule_threshold = choose_threshold(validation, validation["rule"].to_numpy(), found, horizon)
    return Trained(
        state=state,
        rows=rows,
        split=split,
        events=found,
        candidate=score(test, state.predict(matrix(test)), found, state.threshold, horizon),
        rule=score(test, test["rule"].to_numpy(), found, rule_threshold, horizon),
        rule_threshold=rule_threshold,
    )


def judge(state: FittedRisk, trained: Trained) -> AlarmScore:
    """Another version (the champion) on the candidate's test days, at its own threshold."""
    test = trained.part("test")
    return score(
        test,
        state.predict(matrix(test)),
        trained.events,
        state.threshold,
        trained.state.horizon_minutes,
    )
