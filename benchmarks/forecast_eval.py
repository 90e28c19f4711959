"""Rolling-origin evaluation of capacity forecasting against seasonal naive and AutoETS.

Run: .venv/bin/python benchmarks/forecast_eval.py [--origins N]
Every origin forecasts one day ahead from the history before it. MASE is scaled by the
in-sample MAE of the daily seasonal naive forecast; coverage is that of our 80% interval.
Writes benchmarks/out/forecast_eval.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from statsforecast.models import AutoETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from monitoring.assess.forecasting import DAY, MAX_HISTORY, MAX_POINTS, forecast_capacity  # noqa: E402

NAB = Path(__file__).resolve().parents[2] / "shared" / "nab" / "data"
OUT = Path(__file__).resolve().parent / "out"
# A CloudWatch series counts as daily-cycle when its one-day autocorrelation is at least this.
DAILY_ACF = 0.4


def load(path: Path) -> pd.Series:
    frame = pd.read_csv(path, parse_dates=["timestamp"])
    return frame.set_index("timestamp")["value"].astype(float)


def simulated_service(seed: int = 7) -> pd.Series:
    """Four weeks of 5-minute request rate with daily and weekly cycles, growth and noise."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-01", periods=28 * 288, freq="5min")
    hours = (index - index[0]) / pd.Timedelta(hours=1)
    daily = 1 + 0.6 * np.sin(2 * np.pi * (hours - 8) / 24)
    weekend = np.where(index.dayofweek >= 5, 0.6, 1.0)
    growth = 1 + 0.1 * hours / hours.max()
    noise = rng.normal(0, 0.08, len(index)) + 0.05 * np.sin(hours / 7.3)
    return pd.Series(400 * daily * weekend * growth * (1 + noise), index=index)


def daily_cycle_series() -> dict[str, pd.Series]:
    chosen = {"nyc_taxi": load(NAB / "realKnownCause" / "nyc_taxi.csv")}
    for path in sorted((NAB / "realAWSCloudwatch").glob("*.csv")):
        series = load(path)
        if len(series) >= 8 * 288 and series.reset_index(drop=True).autocorr(288) >= DAILY_ACF:
            chosen[path.stem] = series
    chosen["simulated_service"] = simulated_service()
    return chosen


def seasonal_naive(history: np.ndarray, season: int, horizon: int) -> np.ndarray:
    last = history[-season:]
    return np.resize(last, horizon)


def autoets(history: np.ndarray, season: int, horizon: int) -> np.ndarray:
    # statsforecast's ETS ignores seasons longer than 24 steps, so with season_length=season
    # it returns exactly this non-seasonal model, only 20-50x slower (checked on nyc_taxi).
    out = AutoETS(season_length=1).fit(history).predict(h=horizon)
    return np.asarray(out["mean"], dtype=float)


def mase(actual: np.ndarray, predicted: np.ndarray, scale: float) -> float:
    return float(np.mean(np.abs(actual - predicted)) / scale)


def evaluate_origin(series: pd.Series, origin: int, day: int) -> dict[str, float]:
    train, test = series.iloc[:origin], series.iloc[origin : origin + day].to_numpy()
    cap = int(MAX_HISTORY / (series.index[1] - series.index[0]))
    history = train.to_numpy()[-min(cap, MAX_POINTS) :]
    scale = float(np.mean(np.abs(history[day:] - history[:-day]))) or 1.0
    started = time.perf_counter()
    ours = forecast_capacity(train, horizon=day)
    seconds = time.perf_counter() - started
    inside = (test >= ours.lower[80]) & (test <= ours.upper[80])
    row = {
        "ours": mase(test, ours.mean, scale),
        "seasonal_naive": mase(test, seasonal_naive(history, day, day), scale),
        "autoets": mase(test, autoets(history, day, day), scale),
        "coverage80": float(inside.mean()),
        "coverage95": float(((test >= ours.lower[95]) & (test <= ours.upper[95])).mean()),
        "seconds": seconds,
    }
    if len(history) >= 14 * day:
        row["weekly_naive"] = mase(test, seasonal_naive(history, 7 * day, day), scale)
    return row


def evaluate_series(name: str, series: pd.Series, origins: int) -> dict[str, float | str]:
    day = int(DAY / (series.index[1] - series.index[0]))
    last = len(series) - day
    starts = [last - k * day for k in range(origins) if last - k * day >= 7 * day]
    rows = pd.DataFrame([evaluate_origin(series, o, day) for o in starts])
    result: dict[str, float | str] = {"series": name, "origins": len(starts)}
    result.update(rows.mean(numeric_only=True).to_dict())
    return result


def print_table(table: pd.DataFrame) -> None:
    table = table.assign(
        ours_vs_snaive=table["ours"] / table["seasonal_naive"],
        ours_vs_autoets=table["ours"] / table["autoets"],
    )
    cols = [
        "series",
        "origins",
        "ours",
        "seasonal_naive",
        "autoets",
        "weekly_naive",
        "ours_vs_snaive",
        "ours_vs_autoets",
        "coverage80",
        "coverage95",
        "seconds",
    ]
    print(table.reindex(columns=cols).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--origins", type=int, default=7)
    args = parser.parse_args()
    rows = [evaluate_series(n, s, args.origins) for n, s in daily_cycle_series().items()]
    table = pd.DataFrame(rows)
    mean = table.mean(numeric_only=True).to_dict()
    table = pd.concat([table, pd.DataFrame([{"series": "MEAN", **mean}])], ignore_index=True)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "forecast_eval.csv", index=False)
    print_table(table)
    overall = table.iloc[-1]
    print(
        f"\nmean MASE ours/seasonal-naive = {overall['ours'] / overall['seasonal_naive']:.3f} "
        f"(target <= 0.9); ours/AutoETS = {overall['ours'] / overall['autoets']:.3f} "
        f"(target <= 1); 80% coverage = {overall['coverage80']:.1%} (target 75-85%)"
    )


if __name__ == "__main__":
    main()
