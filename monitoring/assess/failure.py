"""Failure risk: how likely a service is to miss its objectives over the coming horizon.

Risk blends three kinds of evidence through a logistic link, so each one can raise the risk on
its own yet none saturates it alone: NeuroWeaver's predicted performance score, where the
latency, error and memory trends are heading, and the anomalies still open. The evaluation
helpers measure any risk series (ours or the raw-threshold baseline) against incident windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TREND_METRICS = ("latency", "error_rate", "memory")
# A projected rise beyond 3x the current level says no more than 3x does.
MAX_PROJECTED_RISE = 3.0
# How long before an incident an alarm still counts as predicting it.
ALARM_LOOKAHEAD = pd.Timedelta(hours=1)
# A projection below this fraction of its objective says nothing about missing it.
OBJECTIVE_FLOOR = 0.8


@dataclass(frozen=True)
class ServiceSignals:
    """What is known about one service now: recent metric windows are oldest first."""

    performance_score: float | None
    metrics: Mapping[str, Sequence[float]]
    open_anomalies: int = 0
    max_anomaly_score: float = 0.0
    # Objective limits per metric (e.g. latency 250 ms): the trend is projected against them.
    objectives: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RiskWeights:
    """Logistic weights; the bias puts a healthy service (score 1, flat, no anomaly) near 5%."""

    bias: float = -3.0
    score: float = 5.0
    trend: float = 2.5
    anomaly: float = 2.5
    objective: float = 3.0


@dataclass(frozen=True)
class RiskFactor:
    name: str
    value: float
    contribution: float
    detail: str


HAND_SET_RULE = "hand-set rule"


@dataclass(frozen=True)
class FailureRisk:
    risk: float
    horizon_steps: int
    factors: tuple[RiskFactor, ...]
    # Which answered: "hand-set rule", or "failure-risk vN" (the learned champion).
    model: str = HAND_SET_RULE
    # The learned version's alarm threshold, chosen on validation; None for the hand-set rule.
    threshold: float | None = None


def projected_rise(values: Sequence[float], horizon: int) -> float:
    """The least-squares trend's rise over `horizon` steps, relative to the window's level."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if y.size < 3:
        return 0.0
    slope = float(np.polyfit(np.arange(y.size), y, 1)[0])
    level = max(float(np.mean(np.abs(y))), 1e-9)
    return float(np.clip(slope * horizon / level, -MAX_PROJECTED_RISE, MAX_PROJECTED_RISE))


def trend_factors(signals: ServiceSignals, horizon: int, weight: float) -> list[RiskFactor]:
    factors = []
    for name in TREND_METRICS:
        if name not in signals.metrics:
            continue
        rise = projected_rise(signals.metrics[name], horizon)
        # Only worsening counts: an improving metric does not offset a failing one.
        factors.append(
            RiskFactor(
                f"{name}_trend",
                rise,
                weight * max(rise, 0.0),
                f"{name} projected to change {rise:+.0%} over {horizon} steps",
            )
        )
    return factors


def projected_value(values: Sequence[float], horizon: int) -> float | None:
    """Where the least-squares line through the window will be `horizon` steps after it."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if y.size < 3:
        return None
    slope, intercept = np.polyfit(np.arange(y.size), y, 1)
    return float(intercept + slope * (y.size - 1 + horizon))


def objective_factors(signals: ServiceSignals, horizon: int, weight: float) -> list[RiskFactor]:
    """Projected breaches: 0 below 80% of the objective, 1 at it, capped at 2 (120%)."""
    factors = []
    for name, limit in signals.objectives.items():
        projected = projected_value(signals.metrics.get(name, ()), horizon)
        if projected is None or limit <= 0:
            continue
        closeness = float(
            np.clip((projected / limit - OBJECTIVE_FLOOR) / (1 - OBJECTIVE_FLOOR), 0, 2)
        )
        factors.append(
            RiskFactor(
                f"{name}_objective",
                projected,
                weight * closeness,
                f"{name} projected at {projected:.4g} vs objective {limit:g}",
            )
        )
    return factors


def score_factor(signals: ServiceSignals, weight: float) -> RiskFactor | None:
    if signals.performance_score is None:
        return None
    shortfall = 1.0 - min(max(signals.performance_score, 0.0), 1.0)
    return RiskFactor(
        "performance_score",
        signals.performance_score,
        weight * shortfall,
        f"NeuroWeaver predicts score {signals.performance_score:.2f}",
    )


def anomaly_factor(signals: ServiceSignals, weight: float) -> RiskFactor | None:
    if signals.open_anomalies <= 0:
        return None
    strength = min(max(signals.max_anomaly_score, 0.0), 1.0)
    return RiskFactor(
        "open_anomalies",
        float(signals.open_anomalies),
        weight * strength,
        f"{signals.open_anomalies} open anomalies, strongest {strength:.2f}",
    )


def failure_risk(
    signals: ServiceSignals, horizon_steps: int = 12, weights: RiskWeights | None = None
) -> FailureRisk:
    """Risk in [0, 1] of missing objectives within `horizon_steps`, with what drove it."""
    w = weights or RiskWeights()
    factors = [
        f
        for f in (score_factor(signals, w.score), anomaly_factor(signals, w.anomaly))
        if f is not None
    ]
    factors += trend_factors(signals, horizon_steps, w.trend)
    factors += objective_factors(signals, horizon_steps, w.objective)
    z = w.bias + sum(f.contribution for f in factors)
    ranked = sorted(factors, key=lambda f: f.contribution, reverse=True)
    return FailureRisk(1.0 / (1.0 + math.exp(-z)), horizon_steps, tuple(ranked))


@dataclass(frozen=True)
class AlarmEvaluation:
    incidents: int
    detected: int
    recall: float
    mean_lead_minutes: float | None
    false_alarms: int
    false_alarms_per_day: float


def alarm_starts(risk: pd.Series, threshold: float) -> pd.DatetimeIndex:
    """Times the risk rises to the threshold: one alarm per excursion, not one per sample."""
    above = risk.sort_index() >= threshold
    rising = above & ~above.shift(1, fill_value=False)
    return pd.DatetimeIndex(rising[rising].index)


def evaluate_alarms(
    risk: pd.Series,
    incidents: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
    threshold: float = 0.5,
    lookahead: pd.Timedelta = ALARM_LOOKAHEAD,
) -> AlarmEvaluation:
    """Recall, lead time and false alarms of a risk series against (start, end) incidents.

    An alarm raised from `lookahead` before an incident's start until its end counts for that
    incident; its lead is how long before the start the first such alarm came (0 if after).
    """
    alarms = alarm_starts(risk, threshold)
    leads, matched = [], np.zeros(len(alarms), dtype=bool)
    for start, end in incidents:
        hit = (alarms >= start - lookahead) & (alarms <= end)
        matched |= hit
        if hit.any():
            leads.append(max((start - alarms[hit][0]) / pd.Timedelta(minutes=1), 0.0))
    span_days = max((risk.index.max() - risk.index.min()) / pd.Timedelta(days=1), 1e-9)
    false = int((~matched).sum())
    return AlarmEvaluation(
        incidents=len(incidents),
        detected=len(leads),
        recall=len(leads) / len(incidents) if incidents else float("nan"),
        mean_lead_minutes=float(np.mean(leads)) if leads else None,
        false_alarms=false,
        false_alarms_per_day=false / span_days,
    )


def threshold_baseline(frame: pd.DataFrame, limits: Mapping[str, float]) -> pd.Series:
    """The comparison rule: 1 when any raw metric is above its static limit, else 0."""
    breached = pd.Series(False, index=frame.index)
    for column, limit in limits.items():
        breached |= frame[column] > limit
    return breached.astype(float)


def risk_series(
    frame: pd.DataFrame,
    scores: pd.Series | None = None,
    window: int = 12,
    horizon_steps: int = 12,
) -> pd.Series:
    """Our risk at every row of a metric frame, from that row's trailing window only."""
    risks = []
    for end in range(len(frame)):
        past = frame.iloc[max(0, end - window + 1) : end + 1]
        score = None if scores is None else float(scores.iloc[end])
        metrics = {m: past[m].to_numpy() for m in TREND_METRICS if m in past}
        risks.append(failure_risk(ServiceSignals(score, metrics), horizon_steps).risk)
    return pd.Series(risks, index=frame.index)
