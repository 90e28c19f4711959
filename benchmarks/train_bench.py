"""NeuroWeaver's default search on a week of one-minute samples for 10 services, with and
without the pruner, in one run; held-out error beside the baselines.

    .venv/bin/python benchmarks/train_bench.py [--days 7] [--services 10] [--trials 20]

Uses temporary MLflow and Optuna stores; nothing is registered.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import mlflow
from mlflow import MlflowClient

from monitoring.neuroweaver.labels import label_frame, samples_frame, xy
from monitoring.neuroweaver.search import SearchSettings, log_baselines, run_search
from monitoring.neuroweaver.training import rmse, split_by_time
from monitoring.sources.simulator import simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--trials", type=int, default=SearchSettings().trials)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="searches per setting, seeds seed..seed+repeat-1"
    )
    args = parser.parse_args()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    end = datetime(2026, 3, 9, tzinfo=UTC)
    window = simulate(
        end - timedelta(days=args.days), end, [f"svc-{i}" for i in range(args.services)]
    )
    split = split_by_time(label_frame(samples_frame(window.samples)))
    print(
        f"{len(window.samples):,} samples; train/val/test {len(split.train)}/{len(split.validation)}/"
        f"{len(split.test)}; {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores\n"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        experiment = mlflow.set_experiment("bench")
        for seed in range(args.seed, args.seed + args.repeat):
            base = SearchSettings(
                trials=args.trials, storage=f"sqlite:///{tmp}/optuna.db", seed=seed, timeout_s=None
            )
            for label, prune in (("with pruner", True), ("without pruner", False)):
                parent = MlflowClient().create_run(experiment.experiment_id).info.run_id
                began = time.perf_counter()
                result = run_search(
                    split,
                    replace(base, prune=prune, study_name=f"bench-{seed}-{prune}"),
                    experiment.experiment_id,
                    parent,
                )
                elapsed = time.perf_counter() - began
                x_test, y_test = xy(split.test)
                rows.append(
                    (seed, label, elapsed, result, rmse(result.model.predict(x_test), y_test))
                )
        baselines = log_baselines(split, experiment.experiment_id, parent)
    print("| seed | search | wall time (s) | trials complete / pruned | best val MSE | test RMSE |")
    print("|---|---|---|---|---|---|")
    for seed, label, elapsed, result, test in rows:
        print(
            f"| {seed} | {label} | {elapsed:.0f} | {result.complete} / {result.pruned} | {result.val_loss:.5f} "
            f"| {test:.4f} |"
        )
    pairs = list(zip(rows[0::2], rows[1::2], strict=True))
    savings = statistics.median(1 - p[2] / f[2] for p, f in pairs)
    loss_ratio = statistics.median(p[3].val_loss / f[3].val_loss for p, f in pairs)
    print(
        f"\nmedian over {len(pairs)} seeds: the pruner saves {savings:.0%} of wall time; best val loss ratio "
        f"{loss_ratio:.3f} (pruned / unpruned); longest pruned search {max(p[2] for p, _ in pairs):.0f} s"
    )
    print("\n| model | test RMSE (median over seeds) |\n|---|---|")
    print(f"| NeuroWeaver (pruned search) | {statistics.median(p[4] for p, _ in pairs):.4f} |")
    for name, value in baselines.items():
        print(f"| {name} | {value:.4f} |")


if __name__ == "__main__":
    main()
