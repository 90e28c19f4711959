"""`automatrix scale-replay`: a `timestamp,value` demand file through both scalers.

Reads the file, checks every row, and hands the series to the replay core
(`monitoring.assess.replay`), which the scaling benchmark uses too. Timestamps are Unix
seconds or ISO 8601 (a time without a zone is UTC); values are the demand in the same units as
the capacity per replica.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from monitoring.anomaly.files import DetectInputError, read_samples
from monitoring.assess.replay import replay


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
    """The file's values indexed by UTC time; ReplayInputError names the file and the row.

    Rows are read by the same reader as `automatrix detect` and `automatrix forecast`, so the
    three commands accept and refuse the same files, with the same messages."""
    stamps: list[float] = []
    values: list[float] = []
    try:
        for row, _raw, _, epoch, value in read_samples(path):
            if value < 0:
                raise ReplayInputError(f"{path}: row {row}: demand {value:g} is negative")
            stamps.append(epoch)
            values.append(value)
    except DetectInputError as exc:
        raise ReplayInputError(str(exc)) from None
    series = pd.Series(values, index=pd.to_datetime(stamps, unit="s", utc=True))
    if series.index.nunique() < 2:
        raise ReplayInputError(f"{path}: needs at least two distinct timestamps")
    return series
