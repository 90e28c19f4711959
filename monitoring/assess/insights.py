"""One service's assessment: health now, failure risk, capacity forecast, scaling advice and
what the advice would save a month.

Plain functions over samples already read from the store; the orchestrator and the API both
use them. A service with too little history gets an assessment that says so instead of
numbers computed from nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.assess import capacity_model
from monitoring.assess.failure import FailureRisk, ServiceSignals, failure_risk
from monitoring.assess.failure_model import BASELINE_ROWS, RiskModel
from monitoring.assess.forecasting import (
    Forecast,
    InsufficientHistory,
    SeriesChoice,
    ThresholdCrossing,
    forecast_capacity,
    threshold_crossing,
)
from monitoring.assess.scaling import (
    HorizontalAutoscaler,
    MetricSample,
    PredictiveAutoscaler,
    Recommendation,
    ScalingPolicy,
)
from monitoring.config import OrchestratorSettings
from monitoring.neuroweaver.labels import ERROR_SLO_PERCENT, LATENCY_SLO_MS
from monitoring.samples import METRICS, Sample

Predictor = Callable[[np.ndarray], np.ndarray]
FORECAST_STEP = capacity_model.STEP
# Default capacity thresholds per metric: the SLOs for latency and errors, headroom for the rest.
THRESHOLDS: dict[str, float | None] = {
    "cpu_usage": 80.0,
    "memory_usage": 90.0,
    "network_latency": LATENCY_SLO_MS,
    "error_rate": ERROR_SLO_PERCENT,
    "request_count": None,
}
OBJECTIVES = {"latency": LATENCY_SLO_MS, "error_rate": ERROR_SLO_PERCENT, "memory": 90.0}
RISK_COLUMNS = {"network_latency": "latency", "error_rate": "error_rate", "memory_usage": "memory"}
RISK_WINDOW = 60  # rows (minutes) of history behind the risk's trends
MIN_RISK_ROWS = 10
NOW_ROWS = 5  # "now" is the mean of the last few rows, not one noisy sample
HOURS_PER_MONTH = 730.0  # 365 days * 24 hours / 12 months


@dataclass(frozen=True)
class OpenAnomaly:
    metrics: tuple[str, ...]
    score: float


@dataclass(frozen=True)
class CapacityForecast:
    metric: str
    forecast: Forecast
    threshold: float | None
    crossing: ThresholdCrossing | None


@dataclass(frozen=True)
class ScalingCost:
    """A month at the current replica count, at the recommended one, and the difference."""

    price_per_replica_hour: float
    current_monthly: float
    recommended_monthly: float
    monthly_saving: float  # negative when the recommendation adds replicas


@dataclass
class Assessment:
    service: str
    at: datetime
    rows: int
    health: dict[str, float] = field(default_factory=dict)
    predicted_score: float | None = None
    risk: FailureRisk | None = None
    capacity: CapacityForecast | None = None
    recommendation: Recommendation | None = None
    cost: ScalingCost | None = None
    problems: list[str] = field(default_factory=list)


def frame_of(samples: Sequence[Sample]) -> pd.DataFrame:
    index = pd.DatetimeIndex([s.timestamp for s in samples], name="timestamp")
    data = {m: [getattr(s, m) for s in samples] for m in METRICS}
    return pd.DataFrame(data, index=index).sort_index()


def forecast_metric(
    frame: pd.DataFrame,
    metric: str,
    horizon: timedelta,
    threshold: float | None,
    choice: SeriesChoice | None = None,
) -> CapacityForecast:
    """A forecast on 5-minute means, with the fitted `choice` if given (else chosen now);
    raises InsufficientHistory under two days of history."""
    series = capacity_model.series_of(frame, metric)  # what the forecaster was trained on
    steps = max(1, int(np.ceil(pd.Timedelta(horizon) / FORECAST_STEP)))
    forecast = forecast_capacity(series, steps, choice=choice)
    crossing = None if threshold is None else threshold_crossing(forecast, threshold)
    return CapacityForecast(metric, forecast, threshold, crossing)


def predicted_score(frame: pd.DataFrame, predictor: Predictor | None) -> float | None:
    if predictor is None or frame.empty:
        return None
    rows = frame[list(METRICS)].tail(NOW_ROWS).to_numpy(np.float64)
    return float(np.clip(np.mean(predictor(rows)), 0.0, 1.0))


def risk_of(
    frame: pd.DataFrame, score: float | None, anomalies: Sequence[OpenAnomaly], horizon: int
) -> FailureRisk:
    recent = frame.tail(RISK_WINDOW)
    metrics = {name: recent[column].to_numpy() for column, name in RISK_COLUMNS.items()}
    signals = ServiceSignals(
        performance_score=score,
        metrics=metrics,
        open_anomalies=len(anomalies),
        max_anomaly_score=max((a.score for a in anomalies), default=0.0),
        objectives=OBJECTIVES,
    )
    return failure_risk(signals, horizon)


def learned_risk_of(
    frame: pd.DataFrame,
    predictor: Predictor | None,
    anomalies: Sequence[OpenAnomaly],
    model: RiskModel,
) -> FailureRisk:
    """The learned champion's risk: NeuroWeaver's per-row predictions are its score feature when
    it was trained on them (else the observed score), the strongest open anomaly its detector's."""
    recent = frame.tail(BASELINE_ROWS + NOW_ROWS)
    scores = None
    if predictor is not None and model.state.score_source == "neuroweaver":
        scores = pd.Series(predictor(recent[list(METRICS)].to_numpy(np.float64)), recent.index)
    strongest = max((a.score for a in anomalies), default=0.0)
    return model.assess(recent, scores, strongest)


def recommend(
    frame: pd.DataFrame,
    now: datetime,
    capacity: CapacityForecast | None,
    settings: OrchestratorSettings,
    service: str,
    replicas: int | None = None,
) -> Recommendation:
    """The predictive mode when a CPU forecast exists, else Kubernetes' HPA rule alone.

    It starts from `replicas`, the service's registered, undrained endpoints; without any
    (None or 0), from the SCALING_REPLICAS setting. The first reason says which.

    Each run starts a fresh autoscaler: the stabilisation window and rate limits apply within
    a decision, while the cluster's own HPA keeps them across decisions.
    """
    current, source = current_replicas(service, replicas, settings)
    rec = _recommend(frame, now, capacity, settings, current)
    return replace(rec, reasons=(source, *rec.reasons))


def current_replicas(
    service: str, registered: int | None, settings: OrchestratorSettings
) -> tuple[int, str]:
    """The replica count scaling starts from, and where it came from."""
    if registered:
        return registered, (
            f"current replicas: {registered}, the registered, undrained endpoints of {service}"
            " in RelayCore"
        )
    configured = settings.replicas(service)
    name = (
        "SCALING_REPLICAS" if service in settings.scaling_replicas else "SCALING_DEFAULT_REPLICAS"
    )
    return configured, (
        f"current replicas: {configured}, from {name}: no endpoint of {service} is registered"
        " in RelayCore"
    )


def _recommend(
    frame: pd.DataFrame,
    now: datetime,
    capacity: CapacityForecast | None,
    settings: OrchestratorSettings,
    current: int,
) -> Recommendation:
    target = settings.scaling_target_cpu
    cpu_now = float(frame["cpu_usage"].tail(NOW_ROWS).mean())
    metrics = [MetricSample("cpu_usage", cpu_now, target)]
    policy = ScalingPolicy(
        min_replicas=settings.scaling_min_replicas, max_replicas=settings.scaling_max_replicas
    )
    hpa = HorizontalAutoscaler(policy, clock=lambda: now)
    if capacity is None or capacity.metric != "cpu_usage":
        return hpa.recommend(current, metrics)
    # The forecast is per pod; the predictive mode wants the total demand.
    total = _scaled(capacity.forecast, current)
    startup = timedelta(minutes=settings.scaling_startup_minutes)
    # Out and in on the 80% upper bound, anchored to CPU now, sized at the target itself: CPU
    # percent is no hard capacity, so the replay's closer target is not used here.
    predictive = PredictiveAutoscaler(hpa, startup, level=80, lookahead=timedelta(minutes=5))
    return predictive.recommend(current, metrics, total, target, observed=cpu_now * current)


def monthly_cost(rec: Recommendation | None, price_per_replica_hour: float) -> ScalingCost | None:
    """What the current and the recommended replica counts cost a month; None without a price."""
    if rec is None or price_per_replica_hour <= 0:
        return None
    month = price_per_replica_hour * HOURS_PER_MONTH
    current, recommended = rec.current_replicas * month, rec.desired_replicas * month
    return ScalingCost(price_per_replica_hour, current, recommended, current - recommended)


def _scaled(forecast: Forecast, factor: float) -> Forecast:
    return replace(
        forecast,
        mean=forecast.mean * factor,
        lower={k: v * factor for k, v in forecast.lower.items()},
        upper={k: v * factor for k, v in forecast.upper.items()},
    )


def assess(
    service: str,
    samples: Sequence[Sample],
    now: datetime,
    anomalies: Sequence[OpenAnomaly],
    predictor: Predictor | None,
    settings: OrchestratorSettings,
    choice: SeriesChoice | None = None,
    replicas: int | None = None,
    risk_model: RiskModel | None = None,
) -> Assessment:
    """Everything the orchestrator knows about one service from its recent samples; `replicas`
    is its registered, undrained endpoint count (None: none registered). The risk is
    `risk_model`'s (failure-risk@champion) when given, else the hand-set rule's."""
    found = Assessment(service, now, len(samples))
    if len(samples) < MIN_RISK_ROWS:
        found.problems.append(
            f"too little history: {len(samples)} samples, at least {MIN_RISK_ROWS} needed"
        )
        return found
    frame = frame_of(samples)
    found.health = {m: float(frame[m].tail(NOW_ROWS).mean()) for m in METRICS}
    found.predicted_score = predicted_score(frame, predictor)
    if risk_model is not None:
        found.risk = learned_risk_of(frame, predictor, anomalies, risk_model)
    else:
        found.risk = risk_of(frame, found.predicted_score, anomalies, settings.risk_horizon_minutes)
    horizon = timedelta(minutes=settings.forecast_horizon_minutes)
    try:
        found.capacity = forecast_metric(
            frame, "cpu_usage", horizon, THRESHOLDS["cpu_usage"], choice
        )
    except InsufficientHistory as exc:
        found.problems.append(f"no capacity forecast yet: {exc}")
    found.recommendation = recommend(frame, now, found.capacity, settings, service, replicas)
    found.cost = monthly_cost(found.recommendation, settings.scaling_price_per_replica_hour)
    return found
