"""`forecast_files`, the computation behind `automatrix forecast`: outputs, forms, bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from serving.cli.forecast import OUTPUT_COLUMNS, ForecastInputError, forecast_files

START = datetime(2024, 3, 4, tzinfo=UTC)
STEP = timedelta(hours=1)


def daily_values(days: int) -> np.ndarray:
    hours = np.arange(days * 24)
    noise = np.random.default_rng(0).normal(0, 2, len(hours))
    return 50 + 20 * np.sin(2 * np.pi * hours / 24) + noise


def write_csv(path: Path, stamps: list[str], values: list[str]) -> Path:
    lines = ["timestamp,value", *(f"{t},{v}" for t, v in zip(stamps, values, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def hourly_unix(path: Path, days: int = 4) -> Path:
    values = daily_values(days)
    stamps = [str(int((START + i * STEP).timestamp())) for i in range(len(values))]
    return write_csv(path, stamps, [f"{v:.3f}" for v in values])


def hourly_iso(path: Path, days: int = 4) -> Path:
    values = daily_values(days)
    stamps = [(START + i * STEP).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(len(values))]
    return write_csv(path, stamps, [f"{v:.3f}" for v in values])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_unix_input_gives_horizon_rows_after_last_row_in_unix_seconds(tmp_path: Path) -> None:
    source = hourly_unix(tmp_path / "cpu.csv")
    forecast_files([source], horizon=6, output_dir=tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "cpu.csv")
    assert list(rows[0]) == list(OUTPUT_COLUMNS)
    last = int((START + (4 * 24 - 1) * STEP).timestamp())
    assert [int(r["timestamp"]) for r in rows] == [last + 3600 * k for k in range(1, 7)]
    for r in rows:
        lo95, lo80, mean = float(r["lo_95"]), float(r["lo_80"]), float(r["forecast"])
        assert lo95 <= lo80 <= mean <= float(r["hi_80"]) <= float(r["hi_95"])


def test_iso_input_keeps_iso_timestamps(tmp_path: Path) -> None:
    source = hourly_iso(tmp_path / "rps.csv")
    forecast_files([source], horizon=3, output_dir=tmp_path / "out")
    stamps = [r["timestamp"] for r in read_rows(tmp_path / "out" / "rps.csv")]
    assert stamps == ["2024-03-08T00:00:00Z", "2024-03-08T01:00:00Z", "2024-03-08T02:00:00Z"]


@pytest.mark.parametrize(
    ("content", "row", "reason"),
    [
        ("", 1, "empty"),
        ("timestamp,val\n1,2\n", 1, "missing column"),
        ("timestamp,value\n1709510400,1\n1709514000,abc\n", 3, "value"),
        ("timestamp,value\n1709510400,1\nyesterday,2\n", 3, "timestamp"),
        ("timestamp,value\n", 2, "no data rows"),
    ],
)
def test_bad_input_names_file_and_row(tmp_path: Path, content: str, row: int, reason: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(ForecastInputError, match=reason) as info:
        forecast_files([bad], horizon=3, output_dir=tmp_path / "out")
    assert info.value.row == row
    assert str(bad) in str(info.value)


def test_too_little_history_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    good = hourly_unix(tmp_path / "good.csv")
    short = hourly_unix(tmp_path / "short.csv", days=1)
    with pytest.raises(ForecastInputError, match="too little history") as info:
        forecast_files([good, short], horizon=3, output_dir=tmp_path / "out")
    assert info.value.path == short
    assert not (tmp_path / "out").exists()


def test_timestamps_out_of_order_name_the_row(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "back.csv", ["100", "200", "150"], ["1", "2", "3"])
    with pytest.raises(ForecastInputError, match="not after") as info:
        forecast_files([bad], horizon=3, output_dir=tmp_path / "out")
    assert info.value.row == 4


def test_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    source = hourly_unix(tmp_path / "mem.csv")
    code = (
        "import sys; from pathlib import Path; from serving.cli.forecast import forecast_files; "
        "forecast_files([Path(sys.argv[1])], 4, Path(sys.argv[2]))"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", code, str(source), str(tmp_path / "out")],
        check=True,
        cwd=root,
        timeout=120,
    )
    assert len(read_rows(tmp_path / "out" / "mem.csv")) == 4
