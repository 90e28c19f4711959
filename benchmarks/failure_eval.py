"""Failure prediction on the simulator's injected incidents, beside a raw-threshold rule.

Run: .venv/bin/python benchmarks/failure_eval.py [--days 14]
For each simulated service, the risk is computed every 5 minutes from the trailing hour of
1-minute metrics (no NeuroWeaver score and no anomaly input here: trends alone, the weakest
form of the risk). The alarm threshold is chosen on the first half of the days (the lowest
one with at most one false alarm per service-day) and measured on the second half. The
baseline alarms when latency exceeds twice the service's median, errors exceed 5% or memory
exceeds 90%; the same limits are our objectives. Lead is measured before the incident's
start and, more tellingly, before the first objective breach in it. Writes benchmarks/out/failure_eval.csv.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from monitoring.assess.failure import (
    ServiceSignals,
    evaluate_alarms,
    failure_risk,
    threshold_baseline,
)
from monitoring.sources.simulator import DEFAULT_SERVICES, simulate  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
START = datetime(2024, 3, 4, tzinfo=UTC)
WINDOW, EVERY, HORIZON = 60, 5, 30  # minutes of history, minutes between scores, steps ahead
COLUMNS = {"network_latency": "latency", "error_rate": "error_rate", "memory_usage": "memory"}


def frames(days: int) -> tuple[dict[str, pd.DataFrame], dict[str, list[tuple]]]:
    window = simulate(START, START + timedelta(days=days))
    rows = pd.DataFrame([{f: getattr(s, f) for f in s.__slots__} for s in window.samples])
    by_service = {
        name: group.set_index("timestamp").rename(columns=COLUMNS)[list(COLUMNS.values())]
        for name, group in rows.groupby("service")
    }
    incidents: dict[str, list[tuple]] = {name: [] for name in by_service}
    for i in window.incidents:
        incidents[i.service].append((pd.Timestamp(i.start), pd.Timestamp(i.end)))
    return by_service, incidents


def objectives(frame: pd.DataFrame) -> dict[str, float]:
    """The service's objectives: the same limits the baseline alarms on."""
    return {"latency": 2 * float(frame["latency"].median()), "error_rate": 5.0, "memory": 90.0}


def our_risk(frame: pd.DataFrame) -> pd.Series:
    values = {c: frame[c].to_numpy() for c in frame.columns}
    limits = objectives(frame)
    ends = range(WINDOW, len(frame), EVERY)
    risks = [
        failure_risk(
            ServiceSignals(
                None, {c: v[e - WINDOW : e] for c, v in values.items()}, objectives=limits
            ),
            HORIZON,
        ).risk
        for e in ends
    ]
    return pd.Series(risks, index=frame.index[list(ends)])


def baseline(frame: pd.DataFrame) -> pd.Series:
    return threshold_baseline(frame, objectives(frame)).iloc[WINDOW::EVERY]


def breach_leads(risk: pd.Series, breaches: pd.Series, inside, threshold: float) -> list[float]:
    """Minutes from the first alarm to the first objective breach, per incident with both."""
    leads = []
    for start, end in inside:
        alarms = risk[(risk.index >= start - pd.Timedelta(hours=1)) & (risk.index <= end)]
        breached = breaches[(breaches.index >= start) & (breaches.index <= end)]
        first_alarm, first_breach = alarms[alarms >= threshold], breached[breached > 0]
        if len(first_alarm) and len(first_breach):
            gap = first_breach.index[0] - first_alarm.index[0]
            leads.append(gap / pd.Timedelta(minutes=1))
    return leads


def evaluate(series, incidents, since, until, threshold, breaches):  # type: ignore[no-untyped-def]
    totals = {"incidents": 0, "detected": 0, "false": 0, "days": 0.0, "leads": [], "ahead": []}
    for name, risk in series.items():
        part = risk[(risk.index >= since) & (risk.index < until)]
        inside = [(s, e) for s, e in incidents[name] if since <= s < until]
        result = evaluate_alarms(part, inside, threshold)
        totals["incidents"] += result.incidents
        totals["detected"] += result.detected
        totals["false"] += result.false_alarms
        totals["days"] += (until - since) / pd.Timedelta(days=1)
        totals["ahead"] += breach_leads(part, breaches[name], inside, threshold)
        if result.mean_lead_minutes is not None:
            totals["leads"] += [result.mean_lead_minutes] * result.detected
    return {
        "recall": totals["detected"] / max(totals["incidents"], 1),
        "mean_lead_min": float(np.mean(totals["leads"])) if totals["leads"] else float("nan"),
        "mean_min_before_breach": float(np.mean(totals["ahead"])) if totals["ahead"] else 0.0,
        "false_alarms_per_day": totals["false"] / totals["days"],
        "incidents": totals["incidents"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    data, incidents = frames(args.days)
    ours = {name: our_risk(f) for name, f in data.items()}
    base = {name: baseline(f) for name, f in data.items()}
    start, mid = pd.Timestamp(START), pd.Timestamp(START + timedelta(days=args.days // 2))
    end = pd.Timestamp(START + timedelta(days=args.days))
    candidates = np.round(np.arange(0.1, 0.96, 0.05), 2)
    fit = [(t, evaluate(ours, incidents, start, mid, t, base)) for t in candidates]
    threshold = next((t for t, r in fit if r["false_alarms_per_day"] <= 1.0), candidates[-1])
    rows = [
        {"rule": f"risk >= {threshold}", **evaluate(ours, incidents, mid, end, threshold, base)},
        {"rule": "raw thresholds", **evaluate(base, incidents, mid, end, 0.5, base)},
    ]
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "failure_eval.csv", index=False)
    print(
        f"{len(DEFAULT_SERVICES)} services, test days {args.days - args.days // 2}, "
        f"threshold chosen on the first {args.days // 2} days"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
