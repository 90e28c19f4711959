"""Capacity forecasting per series: MSTL seasonal decomposition with an AutoETS trend.

Service metrics carry a daily cycle and often a weekly one; MSTL peels off each cycle with
LOESS and lets AutoETS forecast what is left. The last day of history is held out once to
check the choice (a weak cycle can forecast worse than plain AutoETS) and to calibrate the
intervals. A week of 5-minute points takes well under a second; four weeks with the weekly
cycle take a few seconds (benchmarks/forecast_eval.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from statsforecast.models import MSTL, AutoETS

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)
LEVELS: tuple[int, ...] = (80, 95)
# Four weekly cycles are plenty for LOESS and keep the fit fast on 1-minute data.
MAX_HISTORY = pd.Timedelta(days=28)
# Caps the fit's cost on fine-grained data (4 weeks of 5-minute points).
MAX_POINTS = 8064
# LOESS evaluated every n-th point and interpolated between: ~4x faster at the same accuracy.
LOESS_POINTS_PER_CYCLE = 10
# Calibration may narrow or widen native intervals, within reason: one day is a small sample.
SCALE_BOUNDS = (0.5, 3.0)
# Cycles of history needed before a seasonal component can be estimated at all.
MIN_CYCLES = 2
# Two weeks leave each hour-of-week with two samples: too few for a weekly component that
# helps more than it adds noise, so the weekly cycle waits for a third week.
WEEKLY_MIN_CYCLES = 3


class InsufficientHistory(ValueError):
    """The series is too short to estimate its daily cycle."""

    def __init__(self, needed: int, got: int, step: pd.Timedelta) -> None:
        self.needed, self.got, self.step = needed, got, step
        super().__init__(
            f"forecasting needs at least {needed} points of {step} "
            f"({needed * step}, {MIN_CYCLES} daily cycles); got {got}"
        )


@dataclass(frozen=True)
class Forecast:
    """A point forecast with its prediction intervals, one value per future step."""

    index: pd.DatetimeIndex
    mean: np.ndarray
    lower: dict[int, np.ndarray]
    upper: dict[int, np.ndarray]
    step: pd.Timedelta
    season_lengths: tuple[int, ...]
    model: str = "MSTL+AutoETS"
    history_points: int = field(default=0)

    def bound(self, kind: Literal["mean", "lower", "upper"], level: int = 95) -> np.ndarray:
        if kind == "mean":
            return self.mean
        return (self.lower if kind == "lower" else self.upper)[level]

    def value_at(
        self, when: pd.Timestamp, kind: Literal["mean", "lower", "upper"] = "mean", level: int = 95
    ) -> float:
        """The forecast at the last step not after `when` (the first step if before it)."""
        pos = int(self.index.searchsorted(when, side="right")) - 1
        pos = min(max(pos, 0), len(self.index) - 1)
        return float(self.bound(kind, level)[pos])

    def to_frame(self) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {"mean": self.mean}
        for lv in sorted(self.lower):
            cols[f"lo-{lv}"], cols[f"hi-{lv}"] = self.lower[lv], self.upper[lv]
        return pd.DataFrame(cols, index=self.index)


@dataclass(frozen=True)
class ThresholdCrossing:
    """When a forecast first reaches a capacity threshold.

    `expected_at` is when the point forecast reaches it; `possible_at` when the upper bound of
    the interval does (the earliest plausible time). Either may be None, not both.
    """

    threshold: float
    expected_at: pd.Timestamp | None
    possible_at: pd.Timestamp | None
    level: int


def infer_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        raise InsufficientHistory(needed=2, got=len(index), step=pd.Timedelta(0))
    return pd.Timedelta(np.median(np.diff(index.asi8)), unit="ns")


def season_lengths_for(step: pd.Timedelta, n_points: int) -> tuple[int, ...]:
    """The daily and weekly cycles (in steps) that the history covers at least twice."""
    daily, weekly = (int(round(span / step)) for span in (DAY, WEEK))
    cycles = ((daily, MIN_CYCLES), (weekly, WEEKLY_MIN_CYCLES))
    return tuple(s for s, k in cycles if s >= 2 and n_points >= k * s)


def season_lengths_for_count(seasons: tuple[int, ...], n_points: int) -> tuple[int, ...]:
    """The subset of `seasons` still estimable from `n_points` (e.g. one day fewer)."""
    needs = (MIN_CYCLES, WEEKLY_MIN_CYCLES)
    return tuple(s for s, k in zip(seasons, needs, strict=False) if n_points >= k * s)


def prepare_history(series: pd.Series) -> tuple[np.ndarray, pd.Timedelta]:
    """Regular, gap-free float values over at most MAX_HISTORY, and the series' step."""
    series = series.sort_index()
    step = infer_step(pd.DatetimeIndex(series.index))
    regular = series.resample(step).mean()
    regular = regular[regular.index > regular.index[-1] - MAX_HISTORY].iloc[-MAX_POINTS:]
    # Short outages in scraping leave gaps; interpolating keeps the cycles aligned.
    values = regular.astype(float).interpolate(limit_direction="both").to_numpy()
    return values, step


def fit_predict(
    values: np.ndarray, seasons: tuple[int, ...], horizon: int, levels: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """MSTL with an AutoETS trend over `seasons`; plain AutoETS when `seasons` is empty."""
    trend = AutoETS(model="ZZN")
    if seasons:
        jump = max(1, seasons[0] // LOESS_POINTS_PER_CYCLE)
        kwargs = {"seasonal_jump": jump, "trend_jump": jump, "low_pass_jump": jump}
        model: MSTL | AutoETS = MSTL(list(seasons), trend_forecaster=trend, stl_kwargs=kwargs)
    else:
        model = trend
    out = model.fit(values).predict(h=horizon, level=list(levels))
    return {key: np.asarray(col, dtype=float) for key, col in out.items()}


@dataclass(frozen=True)
class Validation:
    """A candidate's errors on the last held-out day, and the interval scales they imply."""

    seasons: tuple[int, ...]
    mae: float
    scales: dict[int, float]


def validate(
    values: np.ndarray, seasons: tuple[int, ...], day: int, levels: tuple[int, ...]
) -> Validation:
    """Fit on the history minus its last day and measure the forecast of that day.

    Native intervals leave out some error (MSTL's come from the trend model alone, not the
    seasonal estimate), so they run narrow on noisy cycles and wide on smooth ones; the
    held-out day measures how much to widen or narrow them (a split-conformal check).
    """
    out = fit_predict(values[:-day], seasons, day, levels)
    errors = np.abs(values[-day:] - out["mean"])
    scales = {}
    for lv in levels:
        half = np.maximum((out[f"hi-{lv}"] - out[f"lo-{lv}"]) / 2, 1e-12)
        scales[lv] = float(np.clip(np.quantile(errors / half, lv / 100), *SCALE_BOUNDS))
    return Validation(seasons, float(np.mean(errors)), scales)


def choose_model(
    values: np.ndarray, seasons: tuple[int, ...], levels: tuple[int, ...]
) -> tuple[tuple[int, ...], dict[int, float]]:
    """The seasons to fit (none: plain AutoETS) and the interval scales, from the last day.

    A weak or broken cycle (a CPU series with a level shift) forecasts worse with a seasonal
    component than without; the held-out day says which, at the cost of two cheap fits.
    """
    day = seasons[0]
    held = season_lengths_for_count(seasons, len(values) - day)
    if not held:
        return seasons, {lv: 1.0 for lv in levels}
    best = min((validate(values, s, day, levels) for s in (held, ())), key=lambda v: v.mae)
    return (seasons if best.seasons else ()), best.scales


def forecast_capacity(
    series: pd.Series, horizon: int, levels: tuple[int, ...] = LEVELS
) -> Forecast:
    """Forecast `horizon` steps of a regularly sampled series with a DatetimeIndex.

    Raises InsufficientHistory when the series holds fewer than two daily cycles.
    """
    values, step = prepare_history(series)
    seasons = season_lengths_for(step, len(values))
    if not seasons or not np.isfinite(values).all():
        needed = MIN_CYCLES * int(round(DAY / step))
        raise InsufficientHistory(needed=needed, got=len(values), step=step)
    seasons, scales = choose_model(values, seasons, levels)
    out = fit_predict(values, seasons, horizon, levels)
    mean = out["mean"]
    half = {lv: scales[lv] * (out[f"hi-{lv}"] - out[f"lo-{lv}"]) / 2 for lv in levels}
    return Forecast(
        index=pd.date_range(series.index.max() + step, periods=horizon, freq=step),
        mean=mean,
        lower={lv: mean - half[lv] for lv in levels},
        upper={lv: mean + half[lv] for lv in levels},
        step=step,
        season_lengths=seasons,
        model="MSTL+AutoETS" if seasons else "AutoETS",
        history_points=len(values),
    )


def first_at_or_above(
    forecast: Forecast, values: np.ndarray, threshold: float
) -> pd.Timestamp | None:
    hits = np.flatnonzero(values >= threshold)
    return forecast.index[hits[0]] if hits.size else None


def threshold_crossing(
    forecast: Forecast, threshold: float, level: int = 95
) -> ThresholdCrossing | None:
    """The first time the point forecast or its upper bound reaches `threshold`, or None."""
    expected = first_at_or_above(forecast, forecast.mean, threshold)
    possible = first_at_or_above(forecast, forecast.upper[level], threshold)
    if expected is None and possible is None:
        return None
    return ThresholdCrossing(threshold, expected, possible, level)
