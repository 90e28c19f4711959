"""Capacity forecasting per series: a pool of methods, chosen per series by its own backtest.

The pool holds weights-free methods: seasonal naive (daily, and weekly when the history allows),
AutoTheta, MSTL with a trend that carries no slope, AutoETS, a gradient-boosted model on
seasonal lags and calendar features, and medians of a few of them. `choose` backtests every
candidate on a few rolling origins of the series' own history, each one horizon long, and keeps
the one with the lowest MASE; a candidate that does not beat the daily seasonal naive in that
backtest is never used (the seasonal naive is always a candidate and the fallback). The 80%
and 95% intervals are conformal: quantiles of the chosen forecast's absolute backtest errors,
per block of steps ahead. The result is a `SeriesChoice`, a JSON-serialisable state that
`forecast_with` uses to fit only the chosen members. docs/forecasting.md has the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from statsforecast.models import MSTL, AutoETS, AutoTheta
from threadpoolctl import threadpool_limits

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)
LEVELS: tuple[int, ...] = (80, 95)
# Four weekly cycles are plenty for every member and keep the fits fast.
MAX_HISTORY = pd.Timedelta(days=28)
# Caps the fit's cost on fine-grained data (4 weeks of 5-minute points).
MAX_POINTS = 8064
# Finer data is averaged to this step before fitting and the forecast repeated back: the fits
# cost a fifth on 1-minute data, and a 1-minute wiggle is noise a day ahead anyway.
WORK_STEP = pd.Timedelta(minutes=5)
# Cycles of history needed before a seasonal component can be estimated at all.
MIN_CYCLES = 2
# Two weeks leave each hour-of-week with two samples: too few for a weekly MSTL component.
WEEKLY_MIN_CYCLES = 3
# AutoTheta's fit grows faster than linearly with length; its level and drift need few days.
THETA_MAX_POINTS = 2016
# The boosted model learns the daily shape; two weeks of rows are enough and keep it cheap.
BOOSTED_MAX_POINTS = 4032
# LOESS evaluated every n-th point and interpolated between: ~4x faster at the same accuracy.
LOESS_POINTS_PER_CYCLE = 10
# Rolling origins of the per-series backtest, each one backtest horizon long.
BACKTEST_ORIGINS = 3
# History kept beyond MAX_HISTORY so that every backtest fit sees as much as the final one.
BACKTEST_SPAN = BACKTEST_ORIGINS * DAY
# Blocks of steps ahead with their own interval width.
INTERVAL_BLOCKS = 4
# Widens the calibrated intervals: the chosen method's backtest errors are optimistic (it was
# chosen on them) and the future drifts from the backtest. Tuned on the development series
# only (benchmarks/forecast_eval.py): 1.0 covered 71% at 80%, 1.3 78%, 1.5 82%.
INTERVAL_INFLATION = 1.4
# A candidate must beat the daily seasonal naive's backtest MASE by 10% to be used: three
# origins are a small sample, and a narrow win there is often a loss the next day. Tuned on
# development only: 27% of series lost to seasonal naive at 1.0, 18% at 0.9.
GUARD_MARGIN = 0.9

SNAIVE = "snaive_daily"
MEMBERS = ("snaive_daily", "snaive_weekly", "theta", "mstl", "ets", "boosted")
COMBINATIONS: dict[str, tuple[str, ...]] = {
    "median(snaive_daily,theta,mstl)": ("snaive_daily", "theta", "mstl"),
    "median(snaive_daily,theta,mstl,boosted)": ("snaive_daily", "theta", "mstl", "boosted"),
    "median(snaive_daily,snaive_weekly,theta,mstl,boosted)": (
        "snaive_daily",
        "snaive_weekly",
        "theta",
        "mstl",
        "boosted",
    ),
}


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
    model: str = "snaive_daily"
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


@dataclass(frozen=True)
class SeriesChoice:
    """What `choose` learnt about one series: the method, its intervals and its backtest.

    `residual_quantiles[level][b]` is the half-width of the level% interval for steps ahead in
    block b (`block_steps` steps each, the last block extending to any horizon). `backtest`
    holds each candidate's MASE (scaled by the in-sample MAE of the daily seasonal naive) over
    the backtest origins; the chosen method has the lowest among those not worse than
    `snaive_daily`.
    """

    method: str
    weights: dict[str, float]
    step_seconds: float
    residual_quantiles: dict[int, list[float]]
    backtest: dict[str, float]
    history_points: int
    block_steps: int = 1
    backtest_origins: int = 0

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "weights": dict(self.weights),
            "step_seconds": self.step_seconds,
            "residual_quantiles": {str(k): list(v) for k, v in self.residual_quantiles.items()},
            "backtest": dict(self.backtest),
            "history_points": self.history_points,
            "block_steps": self.block_steps,
            "backtest_origins": self.backtest_origins,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SeriesChoice:
        weights = _float_map(data["weights"])
        unknown = [m for m in weights if m not in MEMBERS]
        if unknown:
            raise ValueError(f"unknown forecasting member(s) {', '.join(unknown)}")
        quantiles = data["residual_quantiles"]
        if not isinstance(quantiles, Mapping):
            raise ValueError("residual_quantiles must be a mapping of level to widths")
        return cls(
            method=str(data["method"]),
            weights=weights,
            step_seconds=float(_number(data["step_seconds"])),
            residual_quantiles={int(k): [float(x) for x in v] for k, v in quantiles.items()},
            backtest=_float_map(data["backtest"]),
            history_points=int(_number(data["history_points"])),
            block_steps=int(_number(data.get("block_steps", 1))),
            backtest_origins=int(_number(data.get("backtest_origins", 0))),
        )


def _number(value: object) -> float:
    if not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _float_map(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {value!r}")
    return {str(k): float(_number(v)) for k, v in value.items()}


def infer_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        raise InsufficientHistory(needed=2, got=len(index), step=pd.Timedelta(0))
    return pd.Timedelta(np.median(np.diff(index.asi8)), unit="ns")


@dataclass(frozen=True)
class History:
    """A series on a regular grid: `values` at `step`, and the coarser grid the fits use."""

    index: pd.DatetimeIndex
    values: np.ndarray
    step: pd.Timedelta
    factor: int  # steps of `step` averaged into one step of the fitting grid

    @property
    def day(self) -> int:
        return max(1, int(round(DAY / self.step)))

    @property
    def window(self) -> int:
        """The most points one fit sees: MAX_HISTORY, and MAX_POINTS on the fitting grid."""
        return min(int(MAX_HISTORY / self.step), MAX_POINTS * self.factor)

    def grid_points(self, cutoff: int) -> int:
        """How many fitting-grid points a fit at `cutoff` sees."""
        return min(cutoff, self.window) // self.factor

    @property
    def grid_day(self) -> int:
        return max(1, self.day // self.factor)

    def before(self, cutoff: int) -> np.ndarray:
        return self.values[max(0, cutoff - self.window) : cutoff]


def prepare_history(series: pd.Series) -> History:
    """Regular, gap-free float values over at most MAX_HISTORY, at the series' median step."""
    series = series.sort_index()
    step = infer_step(pd.DatetimeIndex(series.index))
    if step <= pd.Timedelta(0):
        raise InsufficientHistory(needed=2, got=1, step=step)
    regular = series.resample(step).mean()
    # Kept: MAX_HISTORY before the earliest backtest origin; each fit sees MAX_HISTORY at most.
    regular = regular[regular.index > regular.index[-1] - MAX_HISTORY - BACKTEST_SPAN]
    factor = max(1, int(WORK_STEP // step))
    # Short outages in scraping leave gaps; interpolating keeps the cycles aligned.
    values = regular.astype(float).interpolate(limit_direction="both").to_numpy()
    return History(pd.DatetimeIndex(regular.index), values, step, factor)


def check_history(history: History) -> None:
    needed = MIN_CYCLES * history.day
    if len(history.values) < needed or not np.isfinite(history.values).all():
        raise InsufficientHistory(needed=needed, got=len(history.values), step=history.step)


def coarsen(values: np.ndarray, factor: int) -> np.ndarray:
    """Means of `factor` consecutive values, blocks aligned to the end (the last is whole)."""
    if factor == 1:
        return values
    usable = len(values) // factor * factor
    return values[len(values) - usable :].reshape(-1, factor).mean(axis=1)


# Members: each maps (fitting-grid values, daily season in grid steps, horizon) to a forecast.
Member = Callable[[np.ndarray, int, int], np.ndarray]


def seasonal_naive(values: np.ndarray, season: int, horizon: int) -> np.ndarray:
    """The last `season` values repeated (statsforecast's SeasonalNaive, without its overhead)."""
    return np.resize(values[-season:], horizon).astype(float)


def snaive_daily(values: np.ndarray, day: int, horizon: int) -> np.ndarray:
    return seasonal_naive(values, day, horizon)


def snaive_weekly(values: np.ndarray, day: int, horizon: int) -> np.ndarray:
    return seasonal_naive(values, 7 * day, horizon)


def theta(values: np.ndarray, day: int, horizon: int) -> np.ndarray:
    values = values[-max(THETA_MAX_POINTS, MIN_CYCLES * day) :]
    kind = "multiplicative" if values.min() > 0 else "additive"
    model = AutoTheta(season_length=day, decomposition_type=kind)
    return _mean(model.fit(values).predict(h=horizon))


def mstl(values: np.ndarray, day: int, horizon: int) -> np.ndarray:
    """MSTL over the daily (and, from three weeks, weekly) cycle with a level-only trend.

    An additive trend fitted to a LOESS trend, undamped, carries the last hours' slope across a
    whole day and loses up to 4x to seasonal naive; a level (ETS without trend) does not.
    """
    seasons = [day] + ([7 * day] if len(values) >= WEEKLY_MIN_CYCLES * 7 * day else [])
    jump = max(1, day // LOESS_POINTS_PER_CYCLE)
    kwargs = {"seasonal_jump": jump, "trend_jump": jump, "low_pass_jump": jump}
    model = MSTL(seasons, trend_forecaster=AutoETS(model="ZNN"), stl_kwargs=kwargs)
    return _mean(model.fit(values).predict(h=horizon))


def ets(values: np.ndarray, day: int, horizon: int) -> np.ndarray:
    # statsforecast's ETS ignores seasons longer than 24 steps: those series get a plain ETS.
    season = day if day <= 24 else 1
    model = AutoETS(season_length=season, model="ZZZ" if season > 1 else "ZZN")
    return _mean(model.fit(values).predict(h=horizon))


def boosted(values: np.ndarray, day: int, horizon: int) -> np.ndarray:
    """Gradient boosting, direct: each step from the same time one (or more) days before.

    The target is the change from the trailing daily mean at that lag, so trees need not
    extrapolate a level; features are the lagged values, the weekly lag and the time of day.
    """
    lag = day * math.ceil(horizon / day)
    values = values[-(BOOSTED_MAX_POINTS + lag + day) :]
    x_all, y_all = _lag_features(values, day, lag, horizon)
    fit_rows = np.arange(lag + day, len(values))
    model = HistGradientBoostingRegressor(
        loss="absolute_error", max_iter=60, learning_rate=0.1, max_leaf_nodes=15
    )
    # A lag the history does not reach (the weekly one in a short series) is left out.
    usable = np.isfinite(x_all[fit_rows]).any(axis=0)
    future = np.arange(len(values), len(values) + horizon)
    # One thread: OpenMP's spinning threads cost 5x on a busy host, for small trees.
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(x_all[fit_rows][:, usable], y_all[fit_rows])
        predicted = model.predict(x_all[future][:, usable])
    return np.asarray(predicted, dtype=float) + x_all[future, 0]


def _lag_features(
    values: np.ndarray, day: int, lag: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows for every time up to `horizon` past the end: (level, lagged deviations, calendar)."""
    total = len(values) + horizon
    padded = np.concatenate([values, np.full(horizon, np.nan)])
    cumsum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(values))])
    t = np.arange(total)

    def at(offset: int) -> np.ndarray:
        src = t - offset
        out = np.full(total, np.nan)
        ok = (src >= 0) & (src < len(values))
        out[ok] = padded[src[ok]]
        return out

    end = np.clip(t - lag + 1, 0, len(values))
    start = np.clip(end - day, 0, len(values))
    level = np.where(
        end > start, (cumsum[end] - cumsum[start]) / np.maximum(end - start, 1), np.nan
    )
    columns = [
        level,
        at(lag) - level,
        at(lag + 1) - level,
        at(lag + day) - level,
        at(7 * day) - level if 7 * day >= lag else np.full(total, np.nan),
        (t % day) / day,
        (t // day) % 7,
    ]
    return np.column_stack(columns), padded - level


def _mean(out: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(out["mean"], dtype=float)


MEMBER_FUNCTIONS: dict[str, Member] = {
    "snaive_daily": snaive_daily,
    "snaive_weekly": snaive_weekly,
    "theta": theta,
    "mstl": mstl,
    "ets": ets,
    "boosted": boosted,
}


def available_members(points: int, day: int, horizon: int) -> tuple[str, ...]:
    """The members a history of `points` grid steps supports for `horizon` grid steps."""
    names = [SNAIVE]
    if points >= 7 * day + day:
        names.append("snaive_weekly")
    if points >= MIN_CYCLES * day:
        names += ["theta", "mstl", "ets"]
    # The boosted model's first row needs its lag and a day before it, and a day of rows.
    if points >= day * math.ceil(horizon / day) + MIN_CYCLES * day:
        names.append("boosted")
    return tuple(names)


def member_forecasts(
    history: History, cutoff: int, horizon: int, members: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Each member's forecast of `horizon` steps after `values[:cutoff]`, on the series' grid."""
    grid = coarsen(history.before(cutoff), history.factor)
    day = history.grid_day
    steps = math.ceil(horizon / history.factor)
    out = {}
    for name in members:
        coarse = MEMBER_FUNCTIONS[name](grid, day, steps)
        out[name] = np.repeat(coarse, history.factor)[:horizon]
    return out


def combine(
    method: str, weights: Mapping[str, float], preds: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The forecast of `method` from its members' forecasts: a median or a weighted mean."""
    stacked = np.vstack([preds[m] for m in weights])
    if method.startswith("median("):
        return np.asarray(np.median(stacked, axis=0), dtype=float)
    w = np.asarray([weights[m] for m in weights], dtype=float)
    return np.asarray(w @ stacked / w.sum(), dtype=float)


def candidates_for(members: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {name: (name,) for name in members}
    for name, parts in COMBINATIONS.items():
        if all(p in members for p in parts):
            found[name] = parts
    return found


def naive_scale(values: np.ndarray, day: int) -> float:
    """The in-sample MAE of the daily seasonal naive: the MASE denominator."""
    scale = float(np.mean(np.abs(values[day:] - values[:-day]))) if len(values) > day else 0.0
    return scale if scale > 1e-12 else max(float(np.mean(np.abs(values))), 1.0) * 1e-6


MemberCache = dict[tuple[pd.Timestamp, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Backtest:
    """Member forecasts and actuals at each backtest origin (cutoff)."""

    cutoffs: tuple[int, ...]
    horizon: int
    preds: dict[int, dict[str, np.ndarray]]
    actuals: dict[int, np.ndarray]
    scales: dict[int, float]
    members: tuple[str, ...]


def backtest_cutoffs(n: int, day: int, horizon: int, origins: int) -> tuple[int, ...]:
    return tuple(
        n - k * horizon for k in range(1, origins + 1) if n - k * horizon >= MIN_CYCLES * day
    )


def run_backtest(
    history: History,
    horizon: int,
    origins: int = BACKTEST_ORIGINS,
    cache: MemberCache | None = None,
) -> Backtest:
    """Every member the shortest training part supports, forecast at each origin.

    `cache` (keyed by the last time before the cutoff, and the horizon) lets a caller that backtests many overlapping
    histories of one series (benchmarks/forecast_eval.py) reuse member forecasts.
    """
    n, day = len(history.values), history.day
    cutoffs = backtest_cutoffs(n, day, horizon, origins)
    if not cutoffs:  # two or three days: only the seasonal naive can be backtested
        cutoffs, members = (n - horizon,), tuple[str, ...]((SNAIVE,))
    else:
        steps = math.ceil(horizon / history.factor)
        members = available_members(history.grid_points(min(cutoffs)), history.grid_day, steps)
    preds, actuals, scales = {}, {}, {}
    for c in cutoffs:
        key = (history.index[c - 1], horizon)
        known = cache.get(key, {}) if cache is not None else {}
        missing = tuple(m for m in members if m not in known)
        found = {**known, **member_forecasts(history, c, horizon, missing)}
        if cache is not None:
            cache[key] = found
        preds[c] = {m: found[m] for m in members}
        actuals[c] = history.values[c : c + horizon]
        scales[c] = naive_scale(history.before(c), day)
    return Backtest(cutoffs, horizon, preds, actuals, scales, members)


def backtest_mase(bt: Backtest, method: str, parts: tuple[str, ...]) -> float:
    weights = {m: 1.0 / len(parts) for m in parts}
    scores = [
        float(np.mean(np.abs(bt.actuals[c] - combine(method, weights, bt.preds[c])))) / bt.scales[c]
        for c in bt.cutoffs
    ]
    score = float(np.mean(scores))
    return score if np.isfinite(score) else math.inf


def calibrate(
    bt: Backtest, method: str, weights: Mapping[str, float], levels: tuple[int, ...]
) -> tuple[dict[int, list[float]], int]:
    """Per-block quantiles of the chosen forecast's absolute backtest errors, and block size."""
    errors = np.vstack(
        [np.abs(bt.actuals[c] - combine(method, weights, bt.preds[c])) for c in bt.cutoffs]
    )
    block = max(1, math.ceil(bt.horizon / INTERVAL_BLOCKS))
    quantiles: dict[int, list[float]] = {}
    for lv in levels:
        widths = []
        for start in range(0, bt.horizon, block):
            chunk = errors[:, start : start + block].ravel()
            n = chunk.size
            # The split-conformal quantile: rank ceil((n + 1) * level) of n.
            q = min(1.0, math.ceil((n + 1) * lv / 100) / n)
            widths.append(INTERVAL_INFLATION * float(np.quantile(chunk, q)))
        quantiles[lv] = widths
    return quantiles, block


def select(bt: Backtest) -> tuple[str, tuple[str, ...], dict[str, float]]:
    """The lowest-MASE candidate not worse than the daily seasonal naive, and every score."""
    candidates = candidates_for(bt.members)
    scores = {name: backtest_mase(bt, name, parts) for name, parts in candidates.items()}
    bar = scores[SNAIVE] * GUARD_MARGIN
    allowed = {name: s for name, s in scores.items() if name == SNAIVE or s < bar}
    best = min(allowed, key=lambda name: (allowed[name], name != SNAIVE))
    return best, candidates[best], scores


def choose(series: pd.Series, horizon: int, levels: tuple[int, ...] = LEVELS) -> SeriesChoice:
    """Backtest the pool on `series`' own history and keep the best method that beats naive.

    The backtest forecasts at least one day ahead from each origin, so that a short horizon
    still sees a whole daily cycle of errors. Raises InsufficientHistory under two days.
    """
    history = prepare_history(series)
    check_history(history)
    return choose_on(history, horizon, levels)


def choose_on(
    history: History,
    horizon: int,
    levels: tuple[int, ...] = LEVELS,
    cache: MemberCache | None = None,
) -> SeriesChoice:
    day = history.day
    span = min(max(horizon, day), len(history.values) - day)
    span = max(history.factor, span // history.factor * history.factor)
    bt = run_backtest(history, span, cache=cache)
    method, parts, scores = select(bt)
    weights = {m: 1.0 / len(parts) for m in parts}
    quantiles, block = calibrate(bt, method, weights, levels)
    return SeriesChoice(
        method=method,
        weights=weights,
        step_seconds=history.step.total_seconds(),
        residual_quantiles=quantiles,
        backtest=scores,
        history_points=min(len(history.values), history.window),
        block_steps=block,
        backtest_origins=len(bt.cutoffs),
    )


def forecast_with(
    series: pd.Series, choice: SeriesChoice, horizon: int, levels: tuple[int, ...] = LEVELS
) -> Forecast:
    """Fit only `choice`'s members on `series` and forecast `horizon` steps with its intervals."""
    history = prepare_history(series)
    check_history(history)
    return forecast_on(history, choice, horizon, levels)


def forecast_on(
    history: History,
    choice: SeriesChoice,
    horizon: int,
    levels: tuple[int, ...] = LEVELS,
    preds: Mapping[str, np.ndarray] | None = None,
) -> Forecast:
    missing = [lv for lv in levels if lv not in choice.residual_quantiles]
    if missing:
        raise ValueError(f"the choice has no calibration for level(s) {missing}")
    n = len(history.values)
    steps = math.ceil(horizon / history.factor)
    members = available_members(history.grid_points(n), history.grid_day, steps)
    if not all(m in members for m in choice.weights):
        # The history shrank below what a member needs: fall back to the seasonal naive.
        choice = SeriesChoice(
            SNAIVE, {SNAIVE: 1.0}, choice.step_seconds, choice.residual_quantiles,
            choice.backtest, choice.history_points, choice.block_steps,
        )  # fmt: skip
    if preds is None:
        preds = member_forecasts(history, n, horizon, choice.members)
    mean, model = combine(choice.method, choice.weights, preds), choice.method
    if not np.isfinite(mean).all():  # a member that failed on this history (e.g. a flat one)
        mean, model = member_forecasts(history, n, horizon, (SNAIVE,))[SNAIVE], SNAIVE
    blocks = np.minimum(np.arange(horizon) // max(choice.block_steps, 1), INTERVAL_BLOCKS - 1)
    half = {}
    for lv in levels:
        widths = np.asarray(choice.residual_quantiles[lv], dtype=float)
        half[lv] = widths[np.minimum(blocks, len(widths) - 1)]
    step = history.step
    return Forecast(
        index=pd.date_range(history.index[-1] + step, periods=horizon, freq=step),
        mean=mean,
        lower={lv: mean - half[lv] for lv in levels},
        upper={lv: mean + half[lv] for lv in levels},
        step=step,
        season_lengths=season_lengths(history, choice),
        model=model,
        history_points=min(n, history.window),
    )


def season_lengths(history: History, choice: SeriesChoice) -> tuple[int, ...]:
    """The cycles (in the series' steps) the chosen forecast repeats."""
    day = history.day
    points = history.grid_points(len(history.values))
    weekly = "snaive_weekly" in choice.weights or (
        "mstl" in choice.weights and points >= WEEKLY_MIN_CYCLES * 7 * history.grid_day
    )
    return (day, 7 * day) if weekly else (day,)


def forecast_capacity(
    series: pd.Series,
    horizon: int,
    levels: tuple[int, ...] = LEVELS,
    choice: SeriesChoice | None = None,
) -> Forecast:
    """Forecast `horizon` steps of a series with a DatetimeIndex, choosing when `choice` is None.

    Raises InsufficientHistory when the series holds fewer than two daily cycles.
    """
    history = prepare_history(series)
    check_history(history)
    if choice is None:
        choice = choose_on(history, horizon, levels)
    return forecast_on(history, choice, horizon, levels)


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
