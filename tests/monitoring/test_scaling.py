"""Scaling: Kubernetes' HPA worked examples and behaviour, the predictive mode's guarantees, and
the replay that compares them."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.assess.forecasting import Forecast
from monitoring.assess.replay import ReplayOptions, decisions, replay
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


def bounded_forecast(mean: list[float], upper: list[float], step_min: int = 5) -> Forecast:
    index = pd.date_range(
        T0 + timedelta(minutes=step_min), periods=len(mean), freq=f"{step_min}min"
    )
    m, u = np.asarray(mean, dtype=float), np.asarray(upper, dtype=float)
    return Forecast(index, m, {80: 2 * m - u}, {80: u}, pd.Timedelta(minutes=step_min), (288,))


def scaler_in(clock: FakeClock) -> PredictiveAutoscaler:
    """Start-up 10 min, a 5-minute decision period: the scale-in window ends at T0 + 15 min."""
    return PredictiveAutoscaler(
        hpa(clock), startup=timedelta(minutes=10), lookahead=timedelta(minutes=5)
    )


def test_recommend_predictive_scales_in_ahead_when_upper_bound_stays_below() -> None:
    # 95% of target: the HPA holds (within tolerance); the forecast says 9 replicas will do.
    flat = bounded_forecast([8.0] * 6, [8.8] * 6)
    rec = scaler_in(FakeClock()).recommend(10, cpu(0.95, 1.0), flat, target=1.0)
    assert rec.desired_replicas == 9 and rec.rule == "predictive"
    assert any("scale in ahead" in r and "upper 80%" in r for r in rec.reasons)


def test_recommend_predictive_no_scale_in_when_upper_bound_rises_within_window() -> None:
    # The upper bound reaches 10.5 at T0 + 15 min, when a replica removed now could not be
    # back: the replicas stay, whatever the reactive rule says.
    rising = bounded_forecast([8.0] * 6, [8.8, 8.8, 10.5, 8.8, 8.8, 8.8])
    rec = scaler_in(FakeClock()).recommend(10, cpu(0.5, 1.0), rising, target=1.0)
    assert rec.desired_replicas == 10 and rec.direction == "hold"
    assert any("scale-in held" in r for r in rec.reasons)


def test_recommend_predictive_scales_in_when_rise_comes_after_window() -> None:
    later = bounded_forecast([8.0] * 6, [8.8, 8.8, 8.8, 10.5, 8.8, 8.8])  # at T0 + 20 min
    rec = scaler_in(FakeClock()).recommend(10, cpu(0.95, 1.0), later, target=1.0)
    assert rec.desired_replicas == 9


def test_recommend_predictive_scale_in_sized_at_closer_target() -> None:
    ahead = scaler_in(FakeClock())
    ahead.target_scale = 1.25  # e.g. a 0.8 target run at 1.0: 8.8 fits in 8.8 / 1.25 -> 8
    flat = bounded_forecast([8.0] * 6, [8.8] * 6)
    rec = ahead.recommend(10, cpu(0.9, 1.0), flat, target=1.0)
    assert rec.desired_replicas == 8


def test_recommend_predictive_anchored_scale_in_keeps_observed_demand() -> None:
    # Observed 9.6 while the forecast says 8: the anchored path starts at 9.6, needing 10.
    flat = bounded_forecast([8.0] * 6, [8.8] * 6)
    rec = scaler_in(FakeClock()).recommend(10, cpu(0.96, 1.0), flat, target=1.0, observed=9.6)
    assert rec.desired_replicas == 10


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


# --- the replay core ----------------------------------------------------------------------


def daily_demand(days: int = 5, step_min: int = 5) -> pd.Series:
    """Quiet nights and a steep morning ramp (15 to 60 in an hour), the same every day."""
    index = pd.date_range("2024-05-01", periods=days * 1440 // step_min, freq=f"{step_min}min")
    hours = (index.hour + index.minute / 60).to_numpy()
    ramp = np.clip(hours - 8.0, 0.0, 1.0) - np.clip(hours - 19.0, 0.0, 1.0)
    return pd.Series(15.0 + 45.0 * ramp, index=index)


def scored(series: pd.Series) -> ReplayOptions:
    return ReplayOptions(score_from=(series.index[0] + pd.Timedelta(days=3)).to_pydatetime())


def test_replay_predictive_fewer_under_capacity_and_replica_minutes_than_hpa() -> None:
    demand = daily_demand()
    found = replay(demand, 10.0, 0.8, 20, price_per_replica_hour=0.5, options=scored(demand))
    hpa, ahead = found["hpa"], found["predictive"]
    assert hpa.under_capacity_minutes > 0
    assert ahead.under_capacity_minutes < hpa.under_capacity_minutes
    assert ahead.replica_minutes < hpa.replica_minutes
    assert hpa.cost == hpa.replica_minutes / 60 * 0.5


def test_replay_without_price_has_no_cost() -> None:
    found = replay(daily_demand(days=1), 10.0, 0.8, 10, scalers=("hpa",))
    assert found["hpa"].cost is None and found["hpa"].replica_minutes > 0


def test_replay_decisions_use_only_rows_before_them() -> None:
    demand = daily_demand(days=4)
    changed = demand.copy()
    k = len(demand) - 100
    changed.iloc[k] = 500.0
    options = scored(demand)
    for scaler in ("hpa", "predictive"):
        before = decisions(demand, scaler, 10.0, 0.8, 10, options)
        after = decisions(changed, scaler, 10.0, 0.8, 10, options)
        assert before[: k + 1] == after[: k + 1], scaler  # the decision at row k is before it
        assert before[k + 1] != after[k + 1], scaler  # the next one sees it
