"""Replay nyc_taxi demand through the HPA rule and our predictive mode, side by side.

Run: .venv/bin/python benchmarks/scaling_replay.py [--startup-min 10] [--days N]
The 30-minute taxi demand is interpolated to minutes and scaled so that its 99th percentile
needs PEAK_PODS pods at full capacity. Both autoscalers decide every minute with the same
policy, target utilisation and replica start-up delay; a new replica serves only once started.
A minute is under capacity when demand exceeds what the ready replicas can serve.
Writes benchmarks/out/scaling_replay.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from monitoring.assess.forecasting import Forecast, forecast_capacity  # noqa: E402
from monitoring.assess.scaling import (
    HorizontalAutoscaler,
    MetricSample,
    PredictiveAutoscaler,
    ScalingPolicy,
)

NAB = Path(__file__).resolve().parents[2] / "shared" / "nab" / "data"
OUT = Path(__file__).resolve().parent / "out"
PEAK_PODS = 40
TARGET = 0.8
WARMUP_DAYS = 28  # history before the replay starts: four weekly cycles for the forecast


@dataclass
class Cluster:
    """Replicas with the minute each becomes ready; scale-in removes the newest first."""

    startup: int
    ready_at: list[int] = field(default_factory=list)

    def resize(self, minute: int, desired: int) -> None:
        if desired > len(self.ready_at):
            self.ready_at += [minute + self.startup] * (desired - len(self.ready_at))
        else:
            self.ready_at = sorted(self.ready_at)[:desired]

    def ready(self, minute: int) -> int:
        return sum(1 for t in self.ready_at if t <= minute)


class SimClock:
    def __init__(self, start: pd.Timestamp) -> None:
        self.start, self.minute = start.to_pydatetime(), 0

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.start + timedelta(minutes=self.minute)


def load_demand() -> tuple[pd.Series, pd.Series]:
    """Half-hourly demand in pods (for forecasting) and its per-minute interpolation."""
    raw = pd.read_csv(NAB / "realKnownCause" / "nyc_taxi.csv", parse_dates=["timestamp"])
    series = raw.set_index("timestamp")["value"].astype(float)
    pods = series / series.quantile(0.99) * PEAK_PODS
    minutes = pods.resample("1min").interpolate()
    return pods, minutes


def minute_forecast(half_hourly: pd.Series, start: pd.Timestamp, hours: int) -> Forecast:
    """A forecast from the history before `start`, interpolated to one value per minute."""
    steps = hours * 2 + 2
    coarse = forecast_capacity(half_hourly[half_hourly.index < start], horizon=steps)
    index = pd.date_range(start, coarse.index[-1], freq="1min")

    def fine(values: np.ndarray) -> np.ndarray:
        return pd.Series(values, coarse.index).reindex(index).interpolate().bfill().to_numpy()

    return Forecast(
        index,
        fine(coarse.mean),
        {80: fine(coarse.lower[80])},
        {80: fine(coarse.upper[80])},
        pd.Timedelta(minutes=1),
        coarse.season_lengths,
    )


def replay(demand, start, startup, forecasts, predictive, level):  # type: ignore[no-untyped-def]
    clock = SimClock(start)
    hpa = HorizontalAutoscaler(ScalingPolicy(max_replicas=500), clock=clock)
    ahead = PredictiveAutoscaler(hpa, startup=timedelta(minutes=startup), level=level)
    cluster = Cluster(startup)
    cluster.resize(-startup, int(np.ceil(demand[0] / TARGET)))
    under = replica_minutes = 0
    for minute, load in enumerate(demand):
        clock.minute = minute
        total = len(cluster.ready_at)
        # Unready pods count as idle, as Kubernetes does when it scales up.
        metric = [MetricSample("utilisation", load / total, TARGET)]
        if predictive:
            rec = ahead.recommend(total, metric, forecasts(clock()), TARGET, observed=load)
        else:
            rec = hpa.recommend(total, metric)
        cluster.resize(minute, rec.desired_replicas)
        under += load > cluster.ready(minute)
        replica_minutes += len(cluster.ready_at)
    return under, replica_minutes


def forecasts_by_period(half_hourly: pd.Series, refit_hours: int):  # type: ignore[no-untyped-def]
    """Forecasts refitted every `refit_hours`, shared by every predictive run."""
    cache: dict[pd.Timestamp, Forecast] = {}

    def lookup(now) -> Forecast:  # type: ignore[no-untyped-def]
        origin = pd.Timestamp(now).floor(f"{refit_hours}h")
        if origin not in cache:
            cache[origin] = minute_forecast(half_hourly, origin, refit_hours + 1)
        return cache[origin]

    return lookup


RUNS = (
    ("hpa", False, None),
    ("predictive (mean)", True, None),
    ("predictive (upper 80%)", True, 80),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--startup-min", type=int, default=10)
    parser.add_argument("--refit-hours", type=int, default=24)
    parser.add_argument("--days", type=int, default=0, help="replay only the first N days")
    args = parser.parse_args()
    half_hourly, minutes = load_demand()
    start = minutes.index[0] + pd.Timedelta(days=WARMUP_DAYS)
    window = minutes[minutes.index >= start]
    if args.days:
        window = window[window.index < start + pd.Timedelta(days=args.days)]
    demand = window.to_numpy()
    lookup = forecasts_by_period(half_hourly, args.refit_hours)
    rows = []
    for name, predictive, level in RUNS:
        began = time.perf_counter()
        under, rm = replay(demand, start, args.startup_min, lookup, predictive, level)
        rows.append(
            {
                "autoscaler": name,
                "minutes_under_capacity": under,
                "replica_minutes": rm,
                "seconds": time.perf_counter() - began,
            }
        )
    table = pd.DataFrame(rows)
    hpa = rows[0]
    table["under_vs_hpa"] = table["minutes_under_capacity"] / max(hpa["minutes_under_capacity"], 1)
    table["replica_minutes_vs_hpa"] = table["replica_minutes"] / hpa["replica_minutes"]
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / f"scaling_replay_startup{args.startup_min}.csv", index=False)
    print(
        f"{len(demand)} minutes replayed, start-up {args.startup_min} min, target {TARGET}, "
        f"forecast refitted every {args.refit_hours} h"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ntargets: under_vs_hpa <= 0.5 and replica_minutes_vs_hpa <= 1.05")


if __name__ == "__main__":
    main()
