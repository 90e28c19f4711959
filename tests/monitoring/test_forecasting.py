"""Capacity forecasting: the per-series choice and its guard, intervals, state, thresholds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring.assess import forecasting
from monitoring.assess.forecasting import (
    Backtest,
    Forecast,
    InsufficientHistory,
    SeriesChoice,
    choose,
    forecast_capacity,
    forecast_with,
    select,
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


# The per-series choice: the pool, the guard, the calibration and the fitted state.


def hourly_cycle(days: int, seed: int = 0, noise: float = 3.0) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-03-04", periods=days * 24, freq="1h")
    hours = np.arange(len(index))
    values = 60 + 25 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, noise, len(index))
    return pd.Series(values, index=index)


def backtest_of(preds: dict[str, list[float]], actual: list[float]) -> Backtest:
    arrays = {name: np.asarray(p, dtype=float) for name, p in preds.items()}
    return Backtest(
        cutoffs=(10,),
        horizon=len(actual),
        preds={10: arrays},
        actuals={10: np.asarray(actual, dtype=float)},
        scales={10: 1.0},
        members=tuple(preds),
    )


def test_guard_a_trend_method_worse_than_seasonal_naive_is_not_used() -> None:
    actual = [10.0, 12.0, 11.0, 13.0]
    bt = backtest_of(
        {
            "snaive_daily": [10.5, 12.5, 11.5, 13.5],  # MAE 0.5
            "mstl": [11.0, 14.0, 15.0, 19.0],  # a slope carried across the horizon
            "theta": [12.0, 14.0, 13.0, 15.0],
        },
        actual,
    )
    method, parts, scores = select(bt)
    assert (method, parts) == ("snaive_daily", ("snaive_daily",))
    assert scores["mstl"] > scores["snaive_daily"]


def test_guard_a_method_that_beats_seasonal_naive_is_chosen() -> None:
    actual = [10.0, 12.0, 11.0, 13.0]
    bt = backtest_of(
        {"snaive_daily": [11.0, 13.0, 12.0, 14.0], "theta": [10.1, 12.1, 11.1, 13.1]}, actual
    )
    method, _, scores = select(bt)
    assert method == "theta"
    assert scores["theta"] == pytest.approx(0.1)


def test_exactly_repeating_days_choose_seasonal_naive() -> None:
    # A jagged daily profile, repeated exactly: nothing beats the seasonal naive's zero error.
    profile = np.random.default_rng(3).uniform(0, 100, 24)
    index = pd.date_range("2024-03-04", periods=10 * 24, freq="1h")
    choice = choose(pd.Series(np.tile(profile, 10), index=index), horizon=24)
    assert choice.method == "snaive_daily"
    assert choice.weights == {"snaive_daily": 1.0}
    assert set(choice.backtest) >= {"snaive_daily", "mstl", "theta", "ets", "boosted"}


def test_choice_round_trips_through_json_and_gives_the_same_forecast() -> None:
    series = hourly_cycle(days=12)
    choice = choose(series, horizon=24)
    again = SeriesChoice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert again == choice
    first, second = forecast_with(series, choice, 24), forecast_with(series, again, 24)
    np.testing.assert_allclose(first.mean, second.mean)
    np.testing.assert_allclose(first.upper[95], second.upper[95])
    assert first.model == choice.method
    assert choice.backtest_origins == 3


def test_forecast_with_fits_only_the_chosen_members(monkeypatch: pytest.MonkeyPatch) -> None:
    series = hourly_cycle(days=8)
    choice = choose(series, horizon=24)
    called: list[str] = []
    for name, member in list(forecasting.MEMBER_FUNCTIONS.items()):

        def spy(values: np.ndarray, day: int, h: int, name: str = name, f=member) -> np.ndarray:  # type: ignore[no-untyped-def]
            called.append(name)
            return f(values, day, h)

        monkeypatch.setitem(forecasting.MEMBER_FUNCTIONS, name, spy)
    forecast_with(series, choice, 24)
    assert sorted(called) == sorted(choice.weights)


def test_intervals_cover_roughly_their_level_out_of_sample() -> None:
    inside: dict[int, list[float]] = {80: [], 95: []}
    for seed in range(3):
        series = hourly_cycle(days=16, seed=seed)
        train, test = series.iloc[:-48], series.iloc[-48:].to_numpy()
        forecast = forecast_capacity(train, horizon=48)
        for lv in inside:
            inside[lv].append(np.mean((test >= forecast.lower[lv]) & (test <= forecast.upper[lv])))
    assert 0.7 <= np.mean(inside[80]) <= 0.92
    assert np.mean(inside[95]) >= 0.88
    assert np.all(forecast.upper[95] >= forecast.upper[80])


def test_one_minute_data_is_forecast_on_its_own_step() -> None:
    index = pd.date_range("2024-03-04", periods=3 * 1440, freq="1min")
    minutes = np.arange(len(index))
    series = pd.Series(50 + 10 * np.sin(2 * np.pi * minutes / 1440), index=index)
    forecast = forecast_capacity(series, horizon=90)
    assert len(forecast.mean) == 90
    assert forecast.step == pd.Timedelta(minutes=1)
    assert forecast.index[0] == index[-1] + pd.Timedelta(minutes=1)


def test_choose_and_forecast_with_refuse_under_two_days() -> None:
    short = hourly_cycle(days=1)
    with pytest.raises(InsufficientHistory, match="48 points"):
        choose(short, horizon=6)
    choice = choose(hourly_cycle(days=4), horizon=6)
    with pytest.raises(InsufficientHistory):
        forecast_with(short, choice, 6)


def test_two_days_fall_back_to_seasonal_naive() -> None:
    choice = choose(hourly_cycle(days=2), horizon=6)
    assert choice.method == "snaive_daily"
    assert all(w > 0 for w in choice.residual_quantiles[80])
