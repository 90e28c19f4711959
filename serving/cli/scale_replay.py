"""`automatrix scale-replay`: a `timestamp,value` demand file through both scalers.

Reads the file, checks every row, and hands the series to the replay core
(`monitoring.assess.replay`), which the scaling benchmark uses too. Timestamps are Unix
seconds or ISO 8601 (a time without a zone is UTC); values are the demand in the same units as
the capacity per replica.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from monitoring.assess.replay import replay

COLUMNS = ("timestamp", "value")


class ReplayInputError(ValueError):
    """A demand file or a replay parameter that cannot be replayed; says which, and where."""


def scale_replay_file(
    input: Path,
    capacity_per_replica: float,
    target_utilisation: float,
    startup_minutes: float,
    price_per_replica_hour: float | None,
) -> dict[str, dict[str, float | None]]:
    """`{"hpa": {...}, "predictive": {...}}`, each with under_capacity_minutes,
    replica_minutes and cost (null without a price)."""
    check_parameters(
        capacity_per_replica, target_utilisation, startup_minutes, price_per_replica_hour
    )
    demand = read_demand(input)
    found = replay(
        demand, capacity_per_replica, target_utilisation, startup_minutes, price_per_replica_hour
    )
    return {name: outcome.as_dict() for name, outcome in found.items()}


def check_parameters(capacity: float, target: float, startup: float, price: float | None) -> None:
    if not (math.isfinite(capacity) and capacity > 0):
        raise ReplayInputError(f"capacity per replica must be a positive number, got {capacity}")
    if not (math.isfinite(target) and 0 < target <= 1):
        raise ReplayInputError(f"target utilisation must be in (0, 1], got {target}")
    if not (math.isfinite(startup) and startup >= 0):
        raise ReplayInputError(f"start-up minutes must be zero or more, got {startup}")
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise ReplayInputError(f"price per replica-hour must be zero or more, got {price}")


def read_demand(path: Path) -> pd.Series:
    """The file's values indexed by UTC time; ReplayInputError names the file and the row."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"{path}: cannot read it: {exc}") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ReplayInputError(f"{path}: the file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ReplayInputError(f"{path}, row 1 (header): missing column {', '.join(missing)}")
    at, col = header.index("timestamp"), header.index("value")
    stamps: list[datetime] = []
    values: list[float] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line, e.g. at the end
        if len(row) <= max(at, col):
            raise ReplayInputError(f"{path}, row {number}: expected {len(header)} columns")
        stamps.append(parse_time(row[at], path, number))
        values.append(parse_value(row[col], path, number))
    if len(values) < 2:
        raise ReplayInputError(f"{path}: needs at least two rows of data, got {len(values)}")
    series = pd.Series(values, index=pd.DatetimeIndex(stamps))
    if series.index.nunique() < 2:
        raise ReplayInputError(f"{path}: needs at least two distinct timestamps")
    return series


def parse_time(text: str, path: Path, row: int) -> datetime:
    raw = text.strip()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    try:
        if math.isfinite(seconds):
            return datetime.fromtimestamp(seconds, tz=UTC)
        moment = datetime.fromisoformat(raw)
    except (ValueError, OverflowError, OSError):
        raise ReplayInputError(
            f"{path}, row {row}: timestamp {raw!r} is neither Unix seconds nor ISO 8601"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_value(text: str, path: Path, row: int) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ReplayInputError(f"{path}, row {row}: value {text.strip()!r} is not a number")
    if value < 0:
        raise ReplayInputError(f"{path}, row {row}: value {value:g} is negative")
    return value
