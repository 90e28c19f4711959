"""Capacity forecasting: intervals on a daily cycle, short history, threshold crossing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.assess.forecasting import (
    Forecast,
    InsufficientHistory,
    forecast_capacity,
    threshold_crossing,
)


def daily_cycle(days: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-03-04", periods=days * 288, freq="5min")
    hours = (index - index[0]) / pd.Timedelta(hours=1)
    values = 100 + 40 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 5, len(index))
    return pd.Series(values, index=index)


def flat_forecast(mean: list[float], upper: list[float]) -> Forecast:
    index = pd.date_range("2024-01-01", periods=len(mean), freq="5min")
    arr = np.asarray(mean, dtype=float)
    return Forecast(
        index=index,
        mean=arr,
        lower={95: arr - 1},
        upper={95: np.asarray(upper, dtype=float)},
        step=pd.Timedelta(minutes=5),
        season_lengths=(288,),
    )


def test_forecast_daily_cycle_intervals_contain_most_held_out_points() -> None:
    series = daily_cycle(days=8)
    train, test = series.iloc[:-288], series.iloc[-288:].to_numpy()
    forecast = forecast_capacity(train, horizon=288)
    inside80 = np.mean((test >= forecast.lower[80]) & (test <= forecast.upper[80]))
    inside95 = np.mean((test >= forecast.lower[95]) & (test <= forecast.upper[95]))
    assert inside80 >= 0.7
    assert inside95 >= 0.85
    assert np.mean(np.abs(forecast.mean - test)) < 10


def test_forecast_index_continues_after_last_observation() -> None:
    series = daily_cycle(days=3)
    forecast = forecast_capacity(series, horizon=12)
    assert forecast.index[0] == series.index[-1] + pd.Timedelta(minutes=5)
    assert len(forecast.mean) == 12
    assert forecast.season_lengths == (288,)


def test_forecast_short_history_raises_insufficient_history_naming_need() -> None:
    series = daily_cycle(days=1)
    with pytest.raises(InsufficientHistory, match="576 points") as info:
        forecast_capacity(series, horizon=12)
    assert info.value.needed == 576
    assert info.value.got == 288


def test_forecast_gaps_are_filled_before_fitting() -> None:
    series = daily_cycle(days=3).drop(daily_cycle(days=3).index[100:110])
    forecast = forecast_capacity(series, horizon=6)
    assert np.isfinite(forecast.mean).all()


def test_threshold_crossing_upper_bound_before_point_forecast() -> None:
    forecast = flat_forecast([1, 2, 3, 4, 5], upper=[2, 4, 6, 8, 10])
    crossing = threshold_crossing(forecast, threshold=4)
    assert crossing is not None
    assert crossing.possible_at == forecast.index[1]
    assert crossing.expected_at == forecast.index[3]


def test_threshold_crossing_never_reached_returns_none() -> None:
    forecast = flat_forecast([1, 1, 1], upper=[2, 2, 2])
    assert threshold_crossing(forecast, threshold=5) is None


def test_threshold_crossing_only_upper_bound_has_no_expected_time() -> None:
    forecast = flat_forecast([1, 1, 1], upper=[2, 6, 2])
    crossing = threshold_crossing(forecast, threshold=5)
    assert crossing is not None
    assert crossing.expected_at is None
    assert crossing.possible_at == forecast.index[1]
