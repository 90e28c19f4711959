"""Specifications of the streaming anomaly detector and of `detect_files`."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest

from monitoring.anomaly.services import (
    DetectInputError,
    DetectorConfig,
    MetricAnomalyDetector,
    ServiceAnomalyDetector,
    detect_files,
)

START = 1_400_000_000.0  # epoch seconds
STEP = 300.0  # five-minute samples, as in most metric stores
WARM_UP = 600  # rows a detector needs before its scores are meaningful


def daily_series(n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [50 + 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(n)]


def score_all(values: list[float], stamps: list[float] | None = None) -> list[float]:
    detector = MetricAnomalyDetector()
    stamps = stamps or [START + STEP * i for i in range(len(values))]
    return [detector.update(v, t) for v, t in zip(values, stamps, strict=True)]


def max_outside(scores: list[float], lo: int, hi: int) -> float:
    return max(s for i, s in enumerate(scores) if i >= WARM_UP and not lo <= i < hi)


def test_score_series_with_spike_is_high_at_spike_and_low_elsewhere() -> None:
    values = daily_series(3000)
    values[2500] += 30
    scores = score_all(values)
    assert scores[2500] > 0.9
    assert max_outside(scores, 2500, 2501) < 0.7


def test_score_series_with_level_shift_flags_its_onset() -> None:
    values = daily_series(3000)
    values[2000:] = [v + 15 for v in values[2000:]]
    scores = score_all(values)
    assert max(scores[2000:2010]) > 0.8
    assert max_outside(scores, 2000, 2010) < 0.6


def test_score_series_with_broken_daily_pattern_flags_it() -> None:
    values = daily_series(3000)
    values[2400:2520] = [values[2400]] * 120  # the daily cycle stops and stays flat
    scores = score_all(values)
    assert max(scores[2400:2520]) > 0.65
    assert max_outside(scores, 2400, 2700) < 0.55  # the cycle resuming is news too


def test_score_any_series_stays_in_unit_interval() -> None:
    rng = random.Random(1)
    series = [
        [0.0] * 500,
        [rng.paretovariate(0.8) for _ in range(1500)],
        [1e300 if i % 97 == 0 else -1e300 for i in range(500)],
        [float(i % 2) for i in range(500)],
    ]
    for values in series:
        assert all(0.0 <= s <= 1.0 for s in score_all(values))


def test_score_row_ignores_rows_after_it() -> None:
    prefix = daily_series(1500)
    rng = random.Random(3)
    a = score_all(prefix + [rng.gauss(0, 100) for _ in range(500)])
    b = score_all(prefix + [1e6] * 500)
    assert a[:1500] == b[:1500]


def test_update_long_series_keeps_buffers_capped() -> None:
    config = DetectorConfig(history=300)
    detector = MetricAnomalyDetector(config)
    rng = random.Random(5)
    value = 0.0
    for i in range(6000):
        value += rng.gauss(0, 1)
        detector.update(value, START + STEP * i)
    sizes = detector.buffer_sizes()
    assert max(size for name, size in sizes.items() if name.startswith("calibrator")) == 300


def test_update_irregular_and_repeated_timestamps_still_flags_spike() -> None:
    rng = random.Random(11)
    stamps, t = [], START
    for _ in range(3000):
        t += rng.choice([0.0, 0.0, 60.0, 300.0, 900.0, 7200.0])  # repeats, jitter and gaps
        stamps.append(t)
    values = [20 + rng.gauss(0, 1) for _ in stamps]
    values[2500] = 45.0
    scores = score_all(values, stamps)
    assert scores[2500] > 0.9
    assert max_outside(scores, 2500, 2501) < 0.7


def test_update_without_timestamps_scores_rows() -> None:
    detector = MetricAnomalyDetector()
    scores = [detector.update(v) for v in daily_series(1000)]
    assert len(scores) == 1000 and all(0.0 <= s <= 1.0 for s in scores)


def test_update_non_finite_value_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        MetricAnomalyDetector().update(math.nan)


def test_update_service_names_the_anomalous_metric() -> None:
    service = ServiceAnomalyDetector()
    rng = random.Random(2)
    results = []
    for i in range(2000):
        cpu = 40 + rng.gauss(0, 2) + (35 if i == 1800 else 0)
        results.append(service.update({"cpu": cpu, "latency": 100 + rng.gauss(0, 5)}, START + i))
    assert results[1800].score > 0.9
    assert results[1800].metrics == ("cpu",)
    assert max(r.score for i, r in enumerate(results[WARM_UP:], WARM_UP) if i != 1800) < 0.7


def test_update_service_accepts_metrics_missing_from_some_updates() -> None:
    service = ServiceAnomalyDetector()
    service.update({"cpu": 1.0}, START)
    result = service.update({"cpu": 1.0, "memory": 2.0}, START + 60)
    assert service.metrics == ("cpu", "memory")
    assert set(result.metric_scores) == {"cpu", "memory"}


# detect_files


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_detect_files_preserves_rows_and_order(tmp_path: Path) -> None:
    rows = [(f"2014-04-01 00:{i // 2:02d}:00", f"{(i * 37) % 11}.5") for i in range(120)]
    rows[10] = (rows[9][0], "1e3")  # a repeated timestamp and a value in another notation
    text = "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows)
    source = write_csv(tmp_path / "in.csv", text)
    [out] = detect_files([source], tmp_path / "out")
    assert out == tmp_path / "out" / "in.csv"
    with out.open(newline="") as handle:
        got = list(csv.DictReader(handle))
    assert [(r["timestamp"], r["value"]) for r in got] == rows
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in got)
    assert list(got[0]) == ["timestamp", "value", "anomaly_score"]


def test_detect_files_writes_one_output_per_input(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", "timestamp,value\n2014-01-01T00:00:00Z,1\n")
    b = write_csv(tmp_path / "b.csv", "value,timestamp\n2,1400000000\n3,1400000060\n")
    outs = detect_files([a, b], tmp_path / "out")
    assert [p.name for p in outs] == ["a.csv", "b.csv"]
    assert len(list(csv.DictReader(outs[1].open()))) == 2


BAD_INPUTS = {
    "missing_column": ("timestamp,val\n2014-01-01 00:00:00,1\n", 1),
    "unparsable_timestamp": ("timestamp,value\n2014-01-01 00:00:00,1\nyesterday,2\n", 3),
    "unparsable_value": ("timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,x\n", 3),
    "nan_value": ("timestamp,value\n2014-01-01 00:00:00,nan\n", 2),
    "short_row": ("timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00\n", 3),
    "empty_file": ("", 1),
    "header_only": ("timestamp,value\n", 2),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_detect_files_bad_input_names_file_and_row_and_writes_nothing(
    tmp_path: Path, case: str
) -> None:
    text, row = BAD_INPUTS[case]
    good = write_csv(tmp_path / "good.csv", "timestamp,value\n2014-01-01 00:00:00,1\n")
    bad = write_csv(tmp_path / f"{case}.csv", text)
    out_dir = tmp_path / "out"
    with pytest.raises(DetectInputError) as caught:
        detect_files([good, bad], out_dir)
    assert f"{case}.csv" in str(caught.value)
    assert f"row {row}" in str(caught.value)
    assert caught.value.row == row
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_detect_files_missing_file_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(DetectInputError, match="nope.csv"):
        detect_files([tmp_path / "nope.csv"], tmp_path / "out")


def test_detect_files_failure_while_writing_leaves_no_file(tmp_path: Path) -> None:
    class Exploding(MetricAnomalyDetector):
        def update(self, value: float, timestamp: float | None = None) -> float:
            raise RuntimeError("disk full")

    source = write_csv(tmp_path / "in.csv", "timestamp,value\n2014-01-01 00:00:00,1\n")
    with pytest.raises(RuntimeError):
        detect_files([source], tmp_path / "out", make_detector=Exploding)
    assert not any((tmp_path / "out").iterdir())


def test_score_series_with_move_in_quiet_hour_flags_it_despite_busy_hours() -> None:
    # Noise is large at night and tiny by day: a move as large as the nightly noise, in a quiet
    # daytime hour, is only news in units of that hour's own spread.
    rng = random.Random(13)
    values = [50 + (rng.gauss(0, 4) if (i % 288) < 144 else rng.gauss(0, 0.2)) for i in range(3000)]
    spot = 2304 + 200  # a quiet slot, eight days in
    values[spot : spot + 12] = [v + 3 for v in values[spot : spot + 12]]
    scores = score_all(values)
    assert max(scores[spot : spot + 12]) > 0.6
    assert max_outside(scores, spot, spot + 40) < 0.6
