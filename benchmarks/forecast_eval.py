"""Rolling-origin evaluation of capacity forecasting on the real capacity series.

Run: nice -n 10 .venv/bin/python benchmarks/forecast_eval.py [--part development|held_out|both]
     [--origins 5] [--max-series N] [--jobs 2] [--from-csv benchmarks/out/forecast_eval_both.csv]

Every series of benchmarks/capacity_series.py is forecast one day ahead from each of `--origins`
origins one day apart, from the history before the origin (capped as the product caps it).
MASE is scaled by the in-sample MAE of the daily seasonal naive on the training part; per
series each method's MASE is averaged over origins and divided by the daily seasonal naive's,
and the tables give the geometric mean of that ratio over series, per part and per source.
"ours" is `choose` + `forecast_with`; the other columns are the pool's members and the median
combination on their own. Coverage is that of our 80% and 95% intervals; seconds are for one
`choose` and one `forecast_with` (the latest origin, nothing cached). Tune on development only.
Writes benchmarks/out/forecast_eval.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.capacity_series import CapacitySeries, series_in  # noqa: E402
from monitoring.assess.forecasting import (  # noqa: E402
    COMBINATIONS,
    SNAIVE,
    MemberCache,
    available_members,
    choose_on,
    combine,
    forecast_on,
    member_forecasts,
    naive_scale,
    prepare_history,
    seasonal_naive,
)

OUT = Path(__file__).resolve().parent / "out"
MIN_DAYS = 3  # history needed before the earliest origin
INFLATIONS = (1.0, 1.15, 1.3, 1.5)
MARGINS = (0.8, 0.9, 0.95)
MEDIAN = "median(snaive_daily,theta,mstl)"
BASELINES = ("snaive_daily", "snaive_weekly", "ets", "mstl", "theta", "boosted", MEDIAN)


def evaluate_origin(
    series: pd.Series, origin: int, day: int, cache: MemberCache, timed: bool
) -> tuple[dict[str, float], str]:
    """One origin: ours and every baseline, MASE against the training part's naive scale."""
    train = series.iloc[:origin]
    history = prepare_history(train)
    started = time.perf_counter()
    choice = choose_on(history, day, cache=None if timed else cache)
    choose_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = forecast_on(history, choice, day)
    forecast_s = time.perf_counter() - started
    actual = series.reindex(ours.index).to_numpy()
    seen = np.isfinite(actual)
    scale = naive_scale(history.before(len(history.values)), history.day)

    def score(pred: np.ndarray) -> float:
        return float(np.mean(np.abs(actual[seen] - pred[seen])) / scale)

    n = len(history.values)
    members = available_members(history.grid_points(n), history.grid_day, -(-day // history.factor))
    key = (history.index[n - 1], day)
    known = cache.get(key, {})
    preds = {
        **known,
        **member_forecasts(history, n, day, tuple(m for m in members if m not in known)),
    }
    cache[key] = preds
    row = {
        "ours": score(ours.mean),
        # The reference is the plain daily seasonal naive on the series' own grid.
        "snaive_daily": score(seasonal_naive(history.values, history.day, day)),
        "coverage80": float(np.mean((actual >= ours.lower[80]) & (actual <= ours.upper[80]))),
        "coverage95": float(np.mean((actual >= ours.lower[95]) & (actual <= ours.upper[95]))),
    }
    # Tuning aids (development only): other interval widths and guard margins, from the same fits.
    for factor in INFLATIONS:
        half = factor * (ours.upper[80] - ours.mean)
        inside = (actual >= ours.mean - half) & (actual <= ours.mean + half)
        row[f"cov80_x{factor}"] = float(np.mean(inside))
    for margin in MARGINS:
        bar = choice.backtest[SNAIVE] * margin
        allowed = {k: v for k, v in choice.backtest.items() if k == SNAIVE or v < bar}
        best = min(allowed, key=lambda k: (allowed[k], k != SNAIVE))
        parts = COMBINATIONS.get(best, (best,))
        if all(p in preds for p in parts):
            row[f"ours_m{margin}"] = score(combine(best, {p: 1.0 for p in parts}, preds))
    for name in BASELINES[1:]:
        parts = MEDIAN[len("median(") : -1].split(",") if name == MEDIAN else [name]
        if all(p in preds for p in parts):
            row[name] = score(combine(name, {p: 1.0 for p in parts}, preds))
    if timed:
        row.update(choose_s=choose_s, forecast_s=forecast_s)
    return row, choice.method


def evaluate_series(item: tuple[CapacitySeries, int]) -> dict[str, object] | None:
    spec, origins = item
    series = spec.load()
    history = prepare_history(series)
    day = history.day
    if len(history.values) < (MIN_DAYS + origins) * day:
        return None
    # On the regular grid, so an origin is exactly one day of steps before the next.
    regular = pd.Series(history.values, history.index)
    cache: MemberCache = {}
    found = [
        evaluate_origin(regular, len(regular) - k * day, day, cache, timed=k == 1)
        for k in range(1, origins + 1)
    ]
    table = pd.DataFrame([row for row, _ in found])
    mean = table.mean(numeric_only=True)
    result: dict[str, object] = {"series": spec.id, "source": spec.source, "part": spec.part}
    result.update({f"mase_{k}": v for k, v in mean.items() if k in ("ours", *BASELINES)})
    for key in mean.index:
        if key.startswith("ours_m"):
            result[key] = float(mean[key] / mean["snaive_daily"])
        elif key.startswith("cov80_x"):
            result[key] = float(mean[key])
    for name in ("ours", *BASELINES):
        if name in mean:
            result[name] = float(mean[name] / mean["snaive_daily"])
    for key in ("coverage80", "coverage95", "choose_s", "forecast_s"):
        result[key] = float(mean[key])
    result["chosen"] = " ".join(method for _, method in found)
    return result


def gmean(values: pd.Series) -> float:
    values = values.dropna()
    return float(np.exp(np.mean(np.log(np.maximum(values, 1e-9))))) if len(values) else np.nan


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per part and source: geometric-mean MASE ratio to seasonal naive, coverage, timings."""
    groups = []
    # A series flat over every evaluated day gives the seasonal naive no error: the ratios are
    # 0/0 (ours, which then is the seasonal naive) or x/0, so it is counted but not averaged.
    table = table.assign(flat=table["mase_snaive_daily"] <= 0)
    for part, by_part in table.groupby("part"):
        for source, group in [*by_part.groupby("source"), ("ALL", by_part)]:
            row: dict[str, object] = {"part": part, "source": source, "series": len(group)}
            row["flat"] = int(group["flat"].sum())
            group = group[~group["flat"]]
            for name in ("ours", *BASELINES):
                row[name] = gmean(group[name]) if name in group else np.nan
            row["worse_than_snaive"] = float((group["ours"] > 1).mean())
            for key in ("coverage80", "coverage95", "choose_s", "forecast_s"):
                row[key] = float(group[key].mean())
            row["choose_s_max"] = float(group["choose_s"].max())
            for key in group.columns:
                if key.startswith("ours_m"):
                    row[key] = gmean(group[key])
                elif key.startswith("cov80_x"):
                    row[key] = float(group[key].mean())
            groups.append(row)
    return pd.DataFrame(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--part", choices=("development", "held_out", "both"), default="development"
    )
    parser.add_argument("--origins", type=int, default=5)
    parser.add_argument("--max-series", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--from-csv", type=Path, help="summarise a saved run instead")
    args = parser.parse_args()
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    pd.set_option("display.width", 250)
    if args.from_csv:
        print(summary(pd.read_csv(args.from_csv)).to_string(index=False, **fmt))
        return
    parts = ("development", "held_out") if args.part == "both" else (args.part,)
    chosen = [s for part in parts for s in series_in(part)][: args.max_series]  # type: ignore[arg-type]
    items = [(s, args.origins) for s in chosen]
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = list(pool.imap(evaluate_series, items))
    else:
        results = [evaluate_series(item) for item in items]
    rows = [r for r in results if r is not None]
    print(
        f"{len(items) - len(rows)} of {len(items)} series skipped (under {MIN_DAYS} days plus the origins)"
    )
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / f"forecast_eval_{args.part}.csv", index=False)
    print(table.drop(columns=["chosen"]).to_string(index=False, **fmt))
    print()
    print(summary(table).to_string(index=False, **fmt))


if __name__ == "__main__":
    main()
