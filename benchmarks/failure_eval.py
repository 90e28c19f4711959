"""Failure prediction: the learned failure risk beside the hand-set rule, on days and services
that training never saw, in one run.

Run: nice -n 10 .venv/bin/python benchmarks/failure_eval.py [--train-days 14] [--eval-days 7]

Training is what `failure-risk-train` runs (`monitoring.assess.failure_training.train`): the
simulator's five default services over the first days, their incidents and SLO breaches as
labels, fitted on the earlier 60% of that time, calibrated within it, both thresholds (the
learned model's and the hand-set rule's) chosen on the next 20% by F1. Evaluation is on five
other simulated services (other names, so other profiles and seeds) over the days after, scored
every five minutes as production would, without NeuroWeaver (the score feature is the observed
one, and the rule gets none) and without the detector's stored anomalies (neither side gets
them). The hand-set rule is shown at its validation threshold and at production's 0.8 (the
alert and the healing command threshold). Writes benchmarks/out/failure_eval.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from monitoring.assess.failure_alarms import score  # noqa: E402
from monitoring.assess.failure_training import (  # noqa: E402
    History,
    all_events,
    build,
    matrix,
    train,
)
from monitoring.samples import METRICS  # noqa: E402
from monitoring.sources.simulator import DEFAULT_SERVICES, simulate  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
START = datetime(2024, 3, 4, tzinfo=UTC)
EVAL_SERVICES = ("billing", "payments", "profile", "cart", "notifications")
HORIZON = 30


def histories(start: datetime, days: int, services: tuple[str, ...]) -> dict[str, History]:
    window = simulate(start, start + timedelta(days=days), services)
    found: dict[str, History] = {}
    for service in services:
        rows = [s for s in window.samples if s.service == service]
        index = pd.DatetimeIndex([s.timestamp for s in rows])
        frame = pd.DataFrame({m: [getattr(s, m) for s in rows] for m in METRICS}, index=index)
        incidents = [
            (pd.Timestamp(i.start), pd.Timestamp(i.end))
            for i in window.incidents
            if i.service == service
        ]
        found[service] = History(frame, incidents)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-days", type=int, default=14)
    parser.add_argument("--eval-days", type=int, default=7)
    args = parser.parse_args()
    began = time.monotonic()
    trained = train(histories(START, args.train_days, DEFAULT_SERVICES), HORIZON)
    fitted = time.monotonic() - began
    later = START + timedelta(days=args.train_days)
    unseen = histories(later, args.eval_days, EVAL_SERVICES)
    rows, found = build(unseen, HORIZON), all_events(unseen)
    learned = trained.state.predict(matrix(rows))
    results = {
        f"learned (threshold {trained.state.threshold:.2f})": score(
            rows, learned, found, trained.state.threshold, HORIZON
        ),
        f"hand-set rule (threshold {trained.rule_threshold:.2f}, chosen on validation)": score(
            rows, rows["rule"].to_numpy(), found, trained.rule_threshold, HORIZON
        ),
        "hand-set rule (threshold 0.80, production's)": score(
            rows, rows["rule"].to_numpy(), found, 0.8, HORIZON
        ),
    }
    table = pd.DataFrame([{"model": name, **vars(s)} for name, s in results.items()])
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "failure_eval.csv", index=False)
    positives = rows["label"].mean()
    print(
        f"trained on {', '.join(DEFAULT_SERVICES)} over {args.train_days} days from {START:%Y-%m-%d}"
        f" ({fitted:.0f} s); evaluated on {', '.join(EVAL_SERVICES)} over the next"
        f" {args.eval_days} days: {len(rows)} rows, {positives:.1%} labelled positive,"
        f" horizon {HORIZON} min"
    )
    print(f"in-training test part: learned {vars(trained.candidate)}")
    print(f"in-training test part: rule    {vars(trained.rule)}")
    columns = ["model", "precision", "recall", "mean_lead_minutes", "false_alarms_per_day"]
    columns += ["brier", "events", "detected", "alarms"]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
