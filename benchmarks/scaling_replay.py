"""Replay real demand through the HPA rule and the predictive scaler, side by side.

Run: nice -n 10 .venv/bin/python benchmarks/scaling_replay.py [--part all] [--days 14]
The simulation is `monitoring.assess.replay` (the core `automatrix scale-replay` uses too). The
series are nyc_taxi and the demand-like series (request, traffic and purchase counts) of
`benchmarks/capacity_series.py`, each in its fixed part: tune on `development`, quote
`held_out`. Each series is scaled so that its 99th percentile needs PEAK_PODS replicas at full
capacity, and interpolated between its rows to a decision every minute (nyc_taxi, as before)
or every five minutes (the others, when coarser): rows are samples of a continuous demand.
Both scalers decide at every step with the same policy, target utilisation and start-up
delay; the first WARMUP_DAYS (less on short series) are replayed but not counted, so that the
predictive scaler has a forecast over the whole scored window.
Writes benchmarks/out/scaling_replay.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity_series import CapacitySeries, all_series  # noqa: E402

from monitoring.assess.replay import ReplayOptions, forecasts_for, replay  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
PEAK_PODS = 40
TARGET = 0.8
STARTUPS = (10, 20)
WARMUP_DAYS = 7.0
MIN_WARMUP_DAYS = 2.6  # two daily cycles for the first forecast, and a refit
# Request, traffic and purchase counts; crash rates, CPU, disk and latency are not demand.
DEMAND = (
    "nab/nyc_taxi",
    "nab_aws/elb_request_count",
    "nab_aws/ec2_network_in",
    "nab_aws/iio_us-east-1_i-a2eb1cd9_NetworkIn",
    "ms_cloud/purchase",
    "ms_cloud/ingress",
    "ms_cloud/api",
)


def demand_series() -> list[CapacitySeries]:
    return [s for s in all_series() if s.id.startswith(DEMAND)]


def prepared(series: CapacitySeries, days: float) -> tuple[pd.Series, pd.Timestamp]:
    """Demand in replicas at full capacity on the decision grid, and where scoring starts."""
    raw = series.load().clip(lower=0.0)
    raw = raw / raw.quantile(0.99) * PEAK_PODS
    native = pd.Timedelta(pd.Series(raw.index).diff().median())
    grid = pd.Timedelta(minutes=1 if series.id == "nab/nyc_taxi" else 5)
    if native > grid:
        raw = raw.resample(grid).interpolate()
    span = (raw.index[-1] - raw.index[0]) / pd.Timedelta(days=1)
    warmup = max(MIN_WARMUP_DAYS, min(WARMUP_DAYS, span / 2))
    start = raw.index[0] + pd.Timedelta(days=warmup)
    if days:
        raw = raw[raw.index < start + pd.Timedelta(days=days)]
    return raw, start


def run_series(series: CapacitySeries, days: float) -> list[dict[str, object]]:
    demand, start = prepared(series, days)
    options = ReplayOptions(score_from=start.to_pydatetime())
    past = forecasts_for(demand, max(STARTUPS), options)  # shared by every start-up time
    rows: list[dict[str, object]] = []
    for startup in STARTUPS:
        began = time.perf_counter()
        found = replay(demand, 1.0, TARGET, startup, options=options, forecasts=past)
        hpa, ahead = found["hpa"], found["predictive"]
        rows.append(
            {
                "series": series.id,
                "part": series.part,
                "startup_min": startup,
                "scored_days": round((demand.index[-1] - start) / pd.Timedelta(days=1), 1),
                "hpa_under": hpa.under_capacity_minutes,
                "pred_under": ahead.under_capacity_minutes,
                "hpa_replica_min": hpa.replica_minutes,
                "pred_replica_min": ahead.replica_minutes,
                "under_ratio": ahead.under_capacity_minutes / max(hpa.under_capacity_minutes, 1.0),
                "replica_ratio": ahead.replica_minutes / hpa.replica_minutes,
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    return rows


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per part and start-up time: totals over the series, and their ratios."""
    grouped = table.groupby(["part", "startup_min"])[
        ["hpa_under", "pred_under", "hpa_replica_min", "pred_replica_min"]
    ].sum()
    grouped["under_ratio"] = grouped["pred_under"] / grouped["hpa_under"].clip(lower=1.0)
    grouped["replica_ratio"] = grouped["pred_replica_min"] / grouped["hpa_replica_min"]
    return grouped.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=("development", "held_out", "all"), default="all")
    parser.add_argument("--days", type=float, default=14, help="scored days per series (0: all)")
    parser.add_argument("--only", default="", help="series ids starting with this")
    args = parser.parse_args()
    # statsmodels' autocorrelation divides by zero on a stretch of zeros (ingress-02's first week).
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="statsmodels")
    chosen = [
        s
        for s in demand_series()
        if (args.part == "all" or s.part == args.part) and s.id.startswith(args.only)
    ]
    rows: list[dict[str, object]] = []
    for series in chosen:
        rows += run_series(series, args.days)
        print(pd.DataFrame(rows[-len(STARTUPS) :]).to_string(index=False, header=len(rows) == 2))
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "scaling_replay.csv", index=False)
    print(f"\ntarget {TARGET}, start-up {STARTUPS} min, at most {args.days:g} scored days each")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ntotals per part")
    print(summary(table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ntargets: under_ratio <= 0.5 and replica_ratio <= 0.90")


if __name__ == "__main__":
    main()
