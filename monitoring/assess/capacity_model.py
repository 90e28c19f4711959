"""The capacity forecaster as a model: its fitted state, how it is fitted, and how it is judged.

The state holds one `SeriesChoice` per service and metric (the method or combination chosen on
that series' own backtest, and its calibrated intervals). Training fits it on the store's
history minus its last day and judges it on that day; a new version is promoted only if it
forecasts that day better than the champion does. Serving and the orchestrator read the state
by alias, so a request refits only the chosen members on the latest data, never the backtest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from monitoring.assess.forecasting import (
    DAY,
    InsufficientHistory,
    SeriesChoice,
    choose,
    forecast_capacity,
    seasonal_naive,
)

MODEL_NAME: Final = "capacity-forecaster"
FORECAST_METRICS: Final = ("cpu_usage", "request_count")
STEP: Final = pd.Timedelta(minutes=5)  # the orchestrator and the API forecast 5-minute means
STATE_FILE: Final = "state.json"
FORMAT: Final = 1


def key_of(service: str, metric: str) -> str:
    return f"{service}/{metric}"


def pyfunc_signature(horizon: int) -> ModelSignature:
    """What `predict` takes and answers, with the horizon as an inference parameter."""
    text = ("service", "metric")
    inputs = [*(ColSpec("string", c) for c in text), ColSpec("datetime", "timestamp")]
    bounds = ("forecast", "lo_80", "hi_80", "lo_95", "hi_95")
    return ModelSignature(
        inputs=Schema([*inputs, ColSpec("double", "value")]),
        outputs=Schema([*inputs, *(ColSpec("double", c) for c in bounds)]),
        params=ParamSchema([ParamSpec("horizon", "long", horizon)]),
    )


@dataclass(frozen=True)
class FittedForecaster:
    """Per-series choices, keyed `service/metric`, and when and on what they were fitted."""

    choices: dict[str, SeriesChoice]
    horizon: int
    fitted_at: str
    skipped: dict[str, str] = field(default_factory=dict)

    def choice_for(self, service: str, metric: str) -> SeriesChoice | None:
        return self.choices.get(key_of(service, metric))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "horizon": self.horizon,
            "fitted_at": self.fitted_at,
            "choices": {key: choice.to_dict() for key, choice in self.choices.items()},
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedForecaster:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown capacity-forecaster state format {data.get('format')!r}")
        return cls(
            choices={k: SeriesChoice.from_dict(v) for k, v in data["choices"].items()},
            horizon=int(data["horizon"]),
            fitted_at=str(data["fitted_at"]),
            skipped=dict(data.get("skipped", {})),
        )


def load_version(version: str) -> FittedForecaster:
    """One registered version's state; registry.ModelLoadError when it cannot be read or is not
    a capacity-forecaster state."""
    from monitoring.neuroweaver import registry  # MLflow and torch: only where a version loads

    data = registry.load_state(MODEL_NAME, version, STATE_FILE)
    try:
        return FittedForecaster.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise registry.ModelLoadError(f"{MODEL_NAME} version {version}: {exc}") from exc


def series_of(frame: pd.DataFrame, metric: str) -> pd.Series:
    """A metric's 5-minute means, the resolution every capacity forecast uses."""
    return frame[metric].resample(STEP).mean().dropna()


def series_table(
    frames: Mapping[str, pd.DataFrame], metrics: Sequence[str] = FORECAST_METRICS
) -> dict[str, pd.Series]:
    """`service/metric` -> that metric's 5-minute series, for every service's frame."""
    return {
        key_of(service, metric): series_of(frame, metric)
        for service, frame in sorted(frames.items())
        for metric in metrics
    }


def split_last(series: pd.Series, horizon: int) -> tuple[pd.Series, pd.Series]:
    """History minus its last `horizon` steps, and those steps."""
    return series.iloc[:-horizon], series.iloc[-horizon:]


def without_last(table: Mapping[str, pd.Series], horizon: int) -> dict[str, pd.Series]:
    """Each series minus the steps `evaluate` holds out: what a candidate may be fitted on."""
    return {key: split_last(series, horizon)[0] for key, series in table.items()}


def fit(
    table: Mapping[str, pd.Series], horizon: int, now: datetime | None = None
) -> FittedForecaster:
    """Chooses a method for every series that has enough history, and says why not for others."""
    choices: dict[str, SeriesChoice] = {}
    skipped: dict[str, str] = {}
    for key, series in sorted(table.items()):
        try:
            choices[key] = choose(series, horizon)
        except InsufficientHistory as exc:
            skipped[key] = str(exc)
    fitted_at = (now or datetime.now(UTC)).isoformat()
    return FittedForecaster(choices, horizon, fitted_at, skipped)


@dataclass(frozen=True)
class Evaluation:
    """MASE against the daily seasonal naive on each series' held-out day, and its summary."""

    mase: dict[str, float]

    @property
    def geometric_mean(self) -> float | None:
        values = [v for v in self.mase.values() if math.isfinite(v) and v > 0]
        return float(np.exp(np.mean(np.log(values)))) if values else None

    def worse_than_naive(self) -> int:
        return sum(1 for v in self.mase.values() if v > 1.0)


def seasonal_naive_mae(history: np.ndarray, season: int, actual: np.ndarray) -> float:
    """The error of repeating the last day, the yardstick every forecast is scaled by."""
    return float(np.mean(np.abs(actual - seasonal_naive(history, season, len(actual)))))


def evaluate(
    state: FittedForecaster | None, table: Mapping[str, pd.Series], horizon: int
) -> Evaluation:
    """Forecasts each series' last `horizon` steps from the rest with the state's choice.

    A series the state has no choice for is forecast by choosing afresh on its history, so a
    champion fitted before a service existed is judged on the same series as the candidate.
    """
    season = int(DAY / STEP)
    mase: dict[str, float] = {}
    for key, series in sorted(table.items()):
        history, held = split_last(series, horizon)
        service, metric = key.rsplit("/", 1)
        choice = state.choice_for(service, metric) if state else None
        try:
            forecast = forecast_capacity(history, horizon, choice=choice)
        except InsufficientHistory:
            continue
        actual = held.to_numpy(dtype=float)
        scale = seasonal_naive_mae(history.to_numpy(dtype=float), season, actual) or 1e-9
        mase[key] = float(np.mean(np.abs(actual - forecast.mean[: len(actual)])) / scale)
    return Evaluation(mase)


@dataclass(frozen=True)
class CapacityPromotion:
    """Whether the candidate replaces the champion, with the figures both were judged by."""

    promoted: bool
    reason: str
    candidate: float | None
    champion: float | None
    champion_version: str | None

    def tags(self) -> dict[str, str]:
        return {
            "promotion.promoted": str(self.promoted),
            "promotion.reason": self.reason,
            "promotion.candidate_mase": "" if self.candidate is None else f"{self.candidate:.5f}",
            "promotion.champion_mase": "" if self.champion is None else f"{self.champion:.5f}",
            "promotion.champion_version": self.champion_version or "",
        }


def decide(
    candidate: Evaluation, champion: Evaluation | None, champion_version: str | None
) -> CapacityPromotion:
    """Promote a first version, or one whose held-out MASE is no worse on the same series."""
    new = candidate.geometric_mean
    if new is None:
        return CapacityPromotion(
            False, "no series had a held-out day to judge on", None, None, champion_version
        )
    if champion is None or champion_version is None:
        return CapacityPromotion(True, "no champion yet", new, None, None)
    old = champion.geometric_mean
    if old is None or new <= old:
        reason = f"held-out MASE {new:.4f} <= champion v{champion_version}'s {old or 0:.4f}"
        return CapacityPromotion(True, reason, new, old, champion_version)
    reason = f"held-out MASE {new:.4f} > champion v{champion_version}'s {old:.4f}"
    return CapacityPromotion(False, reason, new, old, champion_version)
