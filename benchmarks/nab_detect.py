"""NAB benchmark of the anomaly detector, beside the published detectors.

Runs `detect_files` over ../shared/nab/data (one process, so one core), scores the results with
the unmodified ../shared/nab/score.py, and prints the three profiles beside the references of
../shared/nab/README.md, plus throughput and memory growth on a long series.

    .venv/bin/python benchmarks/nab_detect.py [--nab ../shared/nab] [--out benchmarks/out/nab]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitoring.anomaly.services import MetricAnomalyDetector, detect_files  # noqa: E402

# (standard, low FP, low FN) on these 35 files, from ../shared/nab/README.md.
REFERENCES = {
    "ARTime": (67.85, 57.84, 73.72),
    "Numenta HTM": (66.59, 60.81, 71.06),
    "CAD OSE": (62.19, 57.14, 66.31),
    "KNN CAD": (52.97, 40.14, 59.56),
    "Random Cut Forest": (49.53, 38.21, 56.05),
    "Windowed Gaussian": (21.97, 4.87, 29.80),
}
TARGETS = (68.0, 61.0, 74.0)
TARGET_ROWS_PER_SECOND = 20_000
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def run_detector(data_dir: Path, results_dir: Path) -> tuple[int, float]:
    """Scores every file into results_dir/<category>/<name>.csv; returns (rows, seconds)."""
    rows, seconds = 0, 0.0
    for category in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        inputs = sorted(category.glob("*.csv"))
        start = time.perf_counter()
        detect_files(inputs, results_dir / category.name)
        seconds += time.perf_counter() - start
        rows += sum(sum(1 for _ in path.open()) - 1 for path in inputs)
    return rows, seconds


def run_scorer(nab_dir: Path, results_dir: Path) -> dict[str, float]:
    command = [sys.executable, str(nab_dir / "score.py"), str(results_dir), str(nab_dir / "data")]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def detector_throughput(rows: int = 200_000) -> float:
    """Rows per second of `update` alone, without CSV parsing or writing."""
    series = synthetic_series(rows)
    detector = MetricAnomalyDetector()
    start = time.perf_counter()
    for i, value in enumerate(series):
        detector.update(value, 1.4e9 + 300.0 * i)
    return rows / (time.perf_counter() - start)


def memory_growth(checkpoints: tuple[int, ...] = (20_000, 100_000, 300_000)) -> list[int]:
    """Bytes held by one detector after each checkpoint of a long series (flat means bounded)."""
    series = synthetic_series(checkpoints[-1])
    tracemalloc.start()
    detector = MetricAnomalyDetector()
    held, base = [], tracemalloc.get_traced_memory()[0]
    for i, value in enumerate(series, 1):
        detector.update(value, 1.4e9 + 300.0 * i)
        if i in checkpoints:
            held.append(tracemalloc.get_traced_memory()[0] - base)
    tracemalloc.stop()
    return held


def synthetic_series(rows: int) -> list[float]:
    rng = random.Random(0)
    # A daily cycle plus a wandering level: new shapes keep appearing, the worst case for memory.
    level, out = 0.0, []
    for i in range(rows):
        level += rng.gauss(0, 0.05)
        out.append(50 + level + 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1))
    return out


def report(scores: dict[str, float], rows: int, seconds: float) -> None:
    ours = tuple(scores[p] for p in PROFILES)
    print(f"NAB development subset: {scores['files']} files, {scores['windows']} windows")
    print(f"{'detector':<20}{'standard':>10}{'low FP':>10}{'low FN':>10}")
    print(f"{'AutoMatrix (ours)':<20}" + "".join(f"{v:>10.2f}" for v in ours))
    for name, refs in REFERENCES.items():
        print(f"{name:<20}" + "".join(f"{v:>10.2f}" for v in refs))
    print(f"{'target':<20}" + "".join(f"{'>= ' + format(v, '.2f'):>10}" for v in TARGETS))
    for profile, got, want in zip(PROFILES, ours, TARGETS, strict=True):
        print(f"  {profile}: {got:.2f} vs target {want:.2f}: {'met' if got >= want else 'NOT met'}")
    speed = rows / seconds
    print(f"detect_files end to end: {rows} rows in {seconds:.2f} s = {speed:,.0f} rows/s (1 core)")
    pure = detector_throughput()
    verdict = "met" if min(speed, pure) >= TARGET_ROWS_PER_SECOND else "NOT met"
    print(
        f"detector update alone: {pure:,.0f} rows/s; target {TARGET_ROWS_PER_SECOND:,}: {verdict}"
    )
    held = memory_growth()
    print(
        "memory held by one detector after 20k / 100k / 300k rows: "
        + " / ".join(f"{b / 1e6:.2f} MB" for b in held)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=REPO.parent / "shared" / "nab")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "nab")
    args = parser.parse_args()
    rows, seconds = run_detector(args.nab / "data", args.out)
    scores = run_scorer(args.nab, args.out)
    (args.out / "scores.json").write_text(json.dumps(scores) + "\n")
    report(scores, rows, seconds)


if __name__ == "__main__":
    main()
