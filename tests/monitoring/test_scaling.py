"""Scaling: Kubernetes' HPA worked examples and behaviour, and the predictive mode's guarantees."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.assess.forecasting import Forecast
from monitoring.assess.scaling import (
    HorizontalAutoscaler,
    MetricSample,
    PredictiveAutoscaler,
    ScalingPolicy,
)

T0 = datetime(2024, 5, 1, 12, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def hpa(clock: FakeClock, **policy: object) -> HorizontalAutoscaler:
    return HorizontalAutoscaler(ScalingPolicy(**policy), clock=clock)  # type: ignore[arg-type]


def cpu(value: float, target: float) -> list[MetricSample]:
    return [MetricSample("cpu", value, target)]


def demand_forecast(values: list[float], step_min: int = 5) -> Forecast:
    index = pd.date_range(
        T0 + timedelta(minutes=step_min), periods=len(values), freq=f"{step_min}min"
    )
    arr = np.asarray(values, dtype=float)
    return Forecast(
        index, arr, {80: arr * 0.9}, {80: arr * 1.1}, pd.Timedelta(minutes=step_min), (288,)
    )


def test_recommend_hpa_fifty_replicas_at_90_percent_vs_75_gives_60() -> None:
    rec = hpa(FakeClock()).recommend(50, cpu(90, 75))
    assert rec.desired_replicas == 60
    assert rec.rule == "hpa"
    assert "ceil(50 * 1.200) = 60" in rec.reasons[0]


def test_recommend_hpa_200m_vs_100m_doubles_replicas() -> None:
    assert hpa(FakeClock()).recommend(1, cpu(200, 100)).desired_replicas == 2


def test_recommend_hpa_50m_vs_100m_halves_replicas() -> None:
    assert hpa(FakeClock()).recommend(4, cpu(50, 100)).desired_replicas == 2


def test_recommend_hpa_within_tolerance_keeps_replicas() -> None:
    rec = hpa(FakeClock()).recommend(10, cpu(108, 100))
    assert rec.desired_replicas == 10
    assert "within tolerance" in rec.reasons[0]


def test_recommend_hpa_just_outside_tolerance_scales() -> None:
    assert hpa(FakeClock()).recommend(10, cpu(111, 100)).desired_replicas == 12


def test_recommend_hpa_multiple_metrics_takes_largest() -> None:
    metrics = [MetricSample("cpu", 50, 100), MetricSample("rps", 300, 100)]
    assert hpa(FakeClock()).recommend(2, metrics).desired_replicas == 6


def test_recommend_hpa_scale_down_stabilised_to_window_maximum() -> None:
    clock = FakeClock()
    scaler = hpa(clock)
    scaler.recommend(10, cpu(100, 100))
    clock.advance(minutes=1)
    rec = scaler.recommend(10, cpu(50, 100))
    assert rec.desired_replicas == 10
    assert any("stabilised" in r for r in rec.reasons)


def test_recommend_hpa_scale_down_after_window_passes() -> None:
    clock = FakeClock()
    scaler = hpa(clock)
    scaler.recommend(10, cpu(100, 100))
    clock.advance(minutes=6)
    assert scaler.recommend(10, cpu(50, 100)).desired_replicas == 5


def test_recommend_hpa_scale_up_rate_limited_to_four_pods_or_double() -> None:
    clock = FakeClock()
    scaler = hpa(clock)
    first = scaler.recommend(1, cpu(305, 50))  # the HPA walkthrough: ceil(1 * 6.1) = 7
    assert first.raw_desired == 7
    assert first.desired_replicas == 5  # max(1 + 4, 1 * 2)
    clock.advance(seconds=15)
    assert scaler.recommend(5, cpu(61, 50)).desired_replicas == 7


def test_recommend_hpa_large_deployment_limited_to_doubling() -> None:
    rec = hpa(FakeClock()).recommend(10, cpu(400, 100))
    assert rec.desired_replicas == 20


def test_recommend_hpa_rate_limit_counts_changes_within_period() -> None:
    clock = FakeClock()
    scaler = hpa(clock)
    scaler.recommend(10, cpu(200, 100))  # 10 -> 20
    clock.advance(seconds=5)
    assert scaler.recommend(20, cpu(300, 100)).desired_replicas == 20


def test_recommend_hpa_bounded_by_min_and_max_replicas() -> None:
    clock = FakeClock()
    assert hpa(clock, max_replicas=8).recommend(4, cpu(300, 100)).desired_replicas == 8
    assert hpa(clock, min_replicas=3).recommend(4, cpu(10, 100)).desired_replicas == 3


def test_recommend_predictive_never_scales_in_on_forecast_alone() -> None:
    clock = FakeClock()
    ahead = PredictiveAutoscaler(hpa(clock), startup=timedelta(minutes=10))
    falling = demand_forecast([10.0, 5.0, 2.0, 1.0, 1.0])
    rec = ahead.recommend(10, cpu(1.0, 1.0), falling, target=1.0)
    assert rec.desired_replicas == 10


def test_recommend_predictive_scale_in_only_with_reactive_and_held_by_forecast() -> None:
    clock = FakeClock()
    ahead = PredictiveAutoscaler(hpa(clock), startup=timedelta(minutes=10), level=None)
    flat = demand_forecast([6.0] * 6)
    rec = ahead.recommend(10, cpu(0.2, 1.0), flat, target=1.0)  # reactive alone says 2
    assert rec.desired_replicas == 6
    assert any("held" in r for r in rec.reasons)


def test_recommend_predictive_scales_out_ahead_of_forecast_rise() -> None:
    clock = FakeClock()
    ahead = PredictiveAutoscaler(hpa(clock), startup=timedelta(minutes=10), level=80)
    rising = demand_forecast([10.0, 20.0, 30.0, 40.0])
    rec = ahead.recommend(10, cpu(1.0, 1.0), rising, target=1.0)
    assert rec.rule == "predictive"
    assert rec.forecast_at == T0 + timedelta(minutes=10)
    assert rec.forecast_value == 22.0  # upper 80% bound at start-up time
    assert rec.desired_replicas == 20  # rate limited from 22: double of 10


def test_recommend_predictive_anchors_forecast_to_observed_demand() -> None:
    clock = FakeClock()
    ahead = PredictiveAutoscaler(hpa(clock), startup=timedelta(minutes=10), level=None)
    rising = demand_forecast([10.0, 20.0, 30.0])
    rec = ahead.recommend(10, cpu(1.2, 1.0), rising, target=1.0, observed=12.0)
    assert rec.forecast_value == 22.0  # 12 observed + (20 - 10) forecast rise
