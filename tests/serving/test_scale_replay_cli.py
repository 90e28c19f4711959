"""`scale_replay_file`: a demand file through both scalers, and the bad files it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.cli.scale_replay import ReplayInputError, scale_replay_file

KEYS = {"under_capacity_minutes", "replica_minutes", "cost"}


def write_daily(path: Path, iso: bool, days: int = 3) -> Path:
    """Quiet nights and a steep morning ramp, every 5 minutes."""
    index = pd.date_range("2024-05-01", periods=days * 288, freq="5min", tz="UTC")
    hours = (index.hour + index.minute / 60).to_numpy()
    value = 15.0 + 45.0 * (np.clip(hours - 8.0, 0.0, 1.0) - np.clip(hours - 19.0, 0.0, 1.0))
    stamps = [t.isoformat() for t in index] if iso else [str(t.value // 10**9) for t in index]
    lines = ["timestamp,value", *(f"{t},{v:g}" for t, v in zip(stamps, value, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("iso", [False, True])
def test_scale_replay_file_gives_both_scalers(tmp_path: Path, iso: bool) -> None:
    found = scale_replay_file(write_daily(tmp_path / "d.csv", iso), 10.0, 0.8, 10.0, 0.25)
    assert set(found) == {"hpa", "predictive"}
    for outcome in found.values():
        assert set(outcome) == KEYS
        assert outcome["replica_minutes"] > 0 and outcome["under_capacity_minutes"] >= 0
        assert outcome["cost"] == pytest.approx(outcome["replica_minutes"] / 60 * 0.25)


def test_scale_replay_file_unix_and_iso_agree(tmp_path: Path) -> None:
    unix = scale_replay_file(write_daily(tmp_path / "u.csv", False), 10.0, 0.8, 10.0, None)
    iso = scale_replay_file(write_daily(tmp_path / "i.csv", True), 10.0, 0.8, 10.0, None)
    assert unix == iso and unix["hpa"]["cost"] is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("time,value\n1,2\n", r"row 1: missing column\(s\) timestamp"),
        ("timestamp,load\n1,2\n", r"row 1: missing column\(s\) value"),
        (
            "timestamp,value\n1714521600,2\n1714521900,lots\n",
            "row 3: unparsable or non-finite value 'lots'",
        ),
        ("timestamp,value\n1714521600,2\nyesterday,3\n", "row 3: unparsable timestamp 'yesterday'"),
        (
            "timestamp,value\n1714521600,2\n1714521900,nan\n",
            "row 3: unparsable or non-finite value 'nan'",
        ),
        ("timestamp,value\n1714521600,-2\n1714521900,3\n", "row 2: demand -2 is negative"),
        ("timestamp,value\n", "row 2: no data rows"),
        ("timestamp,value\n1714521600,2\n1714521600,3\n", "two distinct timestamps"),
    ],
)
def test_scale_replay_file_bad_input_names_file_and_row(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ReplayInputError, match=says) as error:
        scale_replay_file(path, 10.0, 0.8, 10.0, None)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_scale_replay_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match="cannot be read"):
        scale_replay_file(tmp_path / "nope.csv", 10.0, 0.8, 10.0, None)


@pytest.mark.parametrize(
    ("capacity", "target", "startup", "price", "says"),
    [
        (0.0, 0.8, 10.0, None, "capacity per replica"),
        (-1.0, 0.8, 10.0, None, "capacity per replica"),
        (10.0, 0.0, 10.0, None, "target utilisation"),
        (10.0, 1.5, 10.0, None, "target utilisation"),
        (10.0, 0.8, -1.0, None, "start-up"),
        (10.0, 0.8, 10.0, -0.1, "price"),
    ],
)
def test_scale_replay_file_bad_parameters(
    tmp_path: Path, capacity: float, target: float, startup: float, price: float | None, says: str
) -> None:
    path = write_daily(tmp_path / "d.csv", False, days=1)
    with pytest.raises(ReplayInputError, match=says):
        scale_replay_file(path, capacity, target, startup, price)


def test_scale_replay_file_target_of_one_is_allowed(tmp_path: Path) -> None:
    found = scale_replay_file(write_daily(tmp_path / "d.csv", False, days=1), 10.0, 1.0, 0, None)
    assert found["hpa"]["replica_minutes"] > 0
