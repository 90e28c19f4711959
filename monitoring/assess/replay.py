"""Replays a demand series through the HPA rule and the predictive scaler, side by side.

Pure: a series in, minutes under capacity, replica-minutes and cost out. Both scalers decide
at every row, each from the rows before it only; the predictive one reads forecasts refitted
every `refit` from the past alone (`forecast_capacity`). A replica added at a decision serves
only after the start-up time; one removed stops at once. A row's demand holds until the next
row, and a moment is under capacity when it exceeds what the ready replicas carry at full
capacity. Every replica counts towards replica-minutes (and cost) from the moment it is asked
for, ready or not. Forecasts are fitted on the history averaged to `forecast_step` (30 minutes)
so that weeks of 1-minute rows replay in seconds, and shared between replays of one series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.assess.forecasting import Forecast, forecast_capacity
from monitoring.assess.scaling import (
    HorizontalAutoscaler,
    MetricSample,
    PredictiveAutoscaler,
    ScalingPolicy,
)

SCALERS = ("hpa", "predictive")
# How much of the gap between the target utilisation and full the predictive scaler closes
# (0.8 becomes 0.88); tuned on nyc_taxi.
CLOSER = 0.4
# A forecast above this many times the highest demand in its history is not believed.
BELIEVABLE = 2.0
LEVELS = (80,)
# forecast_capacity's signature: a series, a horizon in steps, the interval levels.
Fit = Callable[[pd.Series, int, tuple[int, ...]], Forecast]


@dataclass(frozen=True)
class ReplayOptions:
    """How the replay forecasts and scores; the defaults are the ones the benchmark tuned."""

    refit: timedelta = timedelta(hours=24)
    # Fits cost seconds each: a long replay refits less often, at most this many times.
    max_refits: int = 30
    forecast_step: timedelta = timedelta(minutes=30)
    # History each fit sees: two weeks keep the daily and weekly cycles, at half the fit time.
    history: timedelta = timedelta(days=14)
    # The predictive scaler's bounds (None: the point forecast) and how close to full it runs.
    out_level: int | None = 80
    scale_in_level: int = 80
    # Utilisation the predictive scaler sizes to; None: CLOSER of the way from target to full.
    predictive_utilisation: float | None = None
    max_replicas: int = 10_000
    # Rows before it are replayed but not counted (e.g. while no forecast exists yet).
    score_from: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    under_capacity_minutes: float
    replica_minutes: float
    cost: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "under_capacity_minutes": self.under_capacity_minutes,
            "replica_minutes": self.replica_minutes,
            "cost": self.cost,
        }


def regular(demand: pd.Series) -> tuple[pd.Series, float]:
    """The series on its own regular step (gaps interpolated), and that step in minutes."""
    series = demand.sort_index().astype(float)
    series = series[~series.index.duplicated(keep="last")]
    if len(series) < 2:
        raise ValueError(f"a replay needs at least two rows, got {len(series)}")
    step = pd.Timedelta(np.median(np.diff(series.index.asi8)), unit="ns")
    if step <= pd.Timedelta(0):
        raise ValueError("timestamps must differ")
    grid = series.resample(step).mean().interpolate(limit_direction="both")
    return grid.clip(lower=0.0), step / pd.Timedelta(minutes=1)


@dataclass
class PastForecasts:
    """Forecasts of a series, each fitted at a refit boundary from the rows before it only.

    `reach` is how far past the next boundary a forecast must run (start-up plus two decision
    periods covers the predictive scaler's windows). A boundary with too little history, or a
    history the forecaster refuses, has no forecast (None): the reactive rule decides alone.
    """

    series: pd.Series
    refit: timedelta
    forecast_step: timedelta
    reach: timedelta
    history: timedelta = timedelta(days=14)
    fit_forecast: Fit = forecast_capacity
    cache: dict[pd.Timestamp, Forecast | None] = field(default_factory=dict)

    def at(self, now: datetime) -> Forecast | None:
        origin = pd.Timestamp(now).floor(pd.Timedelta(self.refit))
        if origin not in self.cache:
            self.cache[origin] = self.fit(origin)
        return self.cache[origin]

    def fit(self, origin: pd.Timestamp) -> Forecast | None:
        past = self.series[self.series.index < origin]
        past = past[past.index >= origin - pd.Timedelta(self.history)]
        step = pd.Timedelta(self.forecast_step)
        fine = pd.Timedelta(np.median(np.diff(self.series.index.asi8[:1000])), unit="ns")
        coarse = past.resample(step).mean().dropna() if fine < step else past
        step = max(step, fine)
        horizon = int(math.ceil((pd.Timedelta(self.refit) + self.reach) / step)) + 2
        if len(coarse) < 2:
            return None
        try:
            found = self.fit_forecast(coarse, horizon, LEVELS)
        except ValueError:  # InsufficientHistory, or a history the forecaster cannot fit
            return None
        # A coarse bin is the mean of the step after its label: put it at its middle.
        centres = found.index + (step / 2 if fine < step else pd.Timedelta(0))
        index = pd.date_range(origin, centres[-1], freq=fine)
        x, xp = index.asi8.astype(float), centres.asi8.astype(float)
        ceiling = BELIEVABLE * float(past.max()) if len(past) else 0.0

        def on_grid(values: np.ndarray) -> np.ndarray:
            return np.clip(np.interp(x, xp, values), 0.0, ceiling)

        return Forecast(
            index,
            on_grid(found.mean),
            {lv: on_grid(found.lower[lv]) for lv in LEVELS},
            {lv: on_grid(found.upper[lv]) for lv in LEVELS},
            fine,
            found.season_lengths,
            found.model,
            found.history_points,
        )


def forecasts_for(
    demand: pd.Series,
    startup_minutes: float,
    options: ReplayOptions = ReplayOptions(),
    fit: Fit = forecast_capacity,
) -> PastForecasts:
    """The forecasts a replay of `demand` reads; share one across replays of the same series
    whose start-up time is at most `startup_minutes`."""
    series, step = regular(demand)
    reach = timedelta(minutes=startup_minutes + 2 * step)
    span = series.index[-1] - series.index[0]
    refit = max(pd.Timedelta(options.refit), (span / options.max_refits).ceil("1h"))
    return PastForecasts(
        series, refit.to_pytimedelta(), options.forecast_step, reach, options.history, fit
    )


class SimClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


Decide = Callable[[int, float, datetime], int]


def hpa_decider(clock: SimClock, capacity: float, target: float, max_replicas: int) -> Decide:
    hpa = HorizontalAutoscaler(ScalingPolicy(max_replicas=max_replicas), clock=clock)

    def decide(total: int, load: float, now: datetime) -> int:
        # Unready pods count as idle, as Kubernetes does when it scales up.
        metric = [MetricSample("utilisation", load / (total * capacity), target)]
        return hpa.recommend(total, metric).desired_replicas

    return decide


def predictive_decider(
    clock: SimClock,
    capacity: float,
    target: float,
    startup_minutes: float,
    step_minutes: float,
    forecasts: PastForecasts,
    options: ReplayOptions,
) -> Decide:
    hpa = HorizontalAutoscaler(ScalingPolicy(max_replicas=options.max_replicas), clock=clock)
    utilisation = options.predictive_utilisation or target + (1.0 - target) * CLOSER
    ahead = PredictiveAutoscaler(
        hpa,
        startup=timedelta(minutes=startup_minutes),
        level=options.out_level,
        lookahead=timedelta(minutes=step_minutes),
        scale_in_level=options.scale_in_level,
        target_scale=utilisation / target,
    )

    def decide(total: int, load: float, now: datetime) -> int:
        metric = [MetricSample("utilisation", load / (total * capacity), target)]
        early = options.score_from is not None and now < options.score_from
        forecast = None if early else forecasts.at(now)
        if forecast is None:  # unscored, or too little history yet: the reactive rule alone
            return hpa.recommend(total, metric).desired_replicas
        carry = capacity * target
        return ahead.recommend(total, metric, forecast, carry, observed=load).desired_replicas

    return decide


def simulate(
    series: pd.Series,
    step_minutes: float,
    capacity: float,
    target: float,
    startup_minutes: float,
    decide: Decide,
    clock: SimClock,
    score_from: datetime | None,
    path: list[int] | None = None,
) -> tuple[float, float]:
    """Minutes under capacity and replica-minutes of one scaler over a regular series.

    `path`, when given, receives the replica count asked for at each row.
    """
    values = series.to_numpy()
    stamps = series.index
    first = 0 if score_from is None else int(stamps.searchsorted(pd.Timestamp(score_from)))
    # Replica ready times in minutes from the first row; kept sorted, so scale-in removes the
    # newest (least ready) first.
    ready_at: list[float] = [-math.inf] * max(1, _replicas(values[0], capacity * target))
    under = replica_minutes = 0.0
    for i, load in enumerate(values):
        start = i * step_minutes
        if i > 0:
            clock.at = stamps[i].to_pydatetime()
            desired = max(1, decide(len(ready_at), float(values[i - 1]), clock.at))
            if desired > len(ready_at):
                ready_at += [start + startup_minutes] * (desired - len(ready_at))
            else:
                del ready_at[desired:]
        if path is not None:
            path.append(len(ready_at))
        if i < first:
            continue
        replica_minutes += len(ready_at) * step_minutes
        need = _replicas(load, capacity)  # at full capacity
        if need > len(ready_at):
            under += step_minutes
        elif need > 0:
            under += min(max(ready_at[need - 1] - start, 0.0), step_minutes)
    return under, replica_minutes


def _replicas(load: float, per_replica: float) -> int:
    return max(math.ceil(load / per_replica - 1e-9), 0)


def replay(
    demand: pd.Series,
    capacity_per_replica: float,
    target_utilisation: float,
    startup_minutes: float,
    price_per_replica_hour: float | None = None,
    options: ReplayOptions = ReplayOptions(),
    forecasts: PastForecasts | None = None,
    scalers: tuple[str, ...] = SCALERS,
) -> dict[str, Outcome]:
    """Each scaler's outcome over `demand` (a value per timestamp, in the capacity's units)."""
    if not capacity_per_replica > 0:
        raise ValueError(f"capacity per replica must be positive, got {capacity_per_replica}")
    if not 0 < target_utilisation <= 1:
        raise ValueError(f"target utilisation must be in (0, 1], got {target_utilisation}")
    if startup_minutes < 0:
        raise ValueError(f"start-up minutes must not be negative, got {startup_minutes}")
    series, step = regular(demand)
    past = forecasts or forecasts_for(series, startup_minutes, options)
    outcomes = {}
    for name in scalers:
        under, minutes = run_one(
            name,
            series,
            step,
            capacity_per_replica,
            target_utilisation,
            startup_minutes,
            past,
            options,
        )
        cost = None if price_per_replica_hour is None else minutes / 60 * price_per_replica_hour
        outcomes[name] = Outcome(under, minutes, cost)
    return outcomes


def decisions(
    demand: pd.Series,
    scaler: str,
    capacity_per_replica: float,
    target_utilisation: float,
    startup_minutes: float,
    options: ReplayOptions = ReplayOptions(),
) -> list[int]:
    """The replica count one scaler asks for at each row of `demand` (the first: the start)."""
    series, step = regular(demand)
    past = forecasts_for(series, startup_minutes, options)
    path: list[int] = []
    run_one(
        scaler,
        series,
        step,
        capacity_per_replica,
        target_utilisation,
        startup_minutes,
        past,
        options,
        path,
    )
    return path


def run_one(
    scaler: str,
    series: pd.Series,
    step: float,
    capacity: float,
    target: float,
    startup_minutes: float,
    past: PastForecasts,
    options: ReplayOptions,
    path: list[int] | None = None,
) -> tuple[float, float]:
    if scaler not in SCALERS:
        raise ValueError(f"unknown scaler {scaler!r}: expected one of {', '.join(SCALERS)}")
    clock = SimClock(series.index[0].to_pydatetime())
    if scaler == "hpa":
        decide = hpa_decider(clock, capacity, target, options.max_replicas)
    else:
        decide = predictive_decider(clock, capacity, target, startup_minutes, step, past, options)
    return simulate(
        series, step, capacity, target, startup_minutes, decide, clock, options.score_from, path
    )
