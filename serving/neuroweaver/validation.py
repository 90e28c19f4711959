"""Fast parsing of predict bodies: JSON bytes to an (n, 5) array, or the reason it is refused.

This is the hot path, so it avoids pydantic and pandas: orjson, one pass over the values to
check their types, and vectorised bounds. The slow, precise `metric_problem` runs only to
explain a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from monitoring.samples import BOUNDS, METRICS, metric_problem, parse_timestamp

LOW = np.array([BOUNDS[m][0] for m in METRICS])
HIGH = np.array([BOUNDS[m][1] for m in METRICS])
_NUMBER_TYPES = {int, float}


class InputError(ValueError):
    """A body that cannot be scored; `status` is 422 or 413."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Parsed:
    rows: np.ndarray
    batch: bool
    keys: list[tuple[str, datetime]] | None  # (service, timestamp) per row, when all rows have them


def parse_prediction(body: bytes, max_rows: int) -> Parsed:
    """One sample object or {"instances": [...]}; raises InputError naming the problem."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError('expected one sample object or {"instances": [...]}')
    if "instances" not in data:
        return Parsed(_matrix([data], single=True), False, _keys([data]))
    instances = data["instances"]
    if not isinstance(instances, list) or not instances:
        raise InputError("instances must be a non-empty list of samples")
    if len(instances) > max_rows:
        raise InputError(
            f"{len(instances)} instances exceed the limit of {max_rows} per request", 413
        )
    return Parsed(_matrix(instances, single=False), True, _keys(instances))


def _matrix(instances: list[Any], single: bool) -> np.ndarray:
    try:
        values = [[row[m] for m in METRICS] for row in instances]
    except (KeyError, TypeError):
        raise InputError(_first_problem(instances, single)) from None
    if {type(v) for row in values for v in row} - _NUMBER_TYPES:
        raise InputError(_first_problem(instances, single))
    try:
        rows = np.array(values, dtype=np.float64)
    except OverflowError:
        raise InputError(_first_problem(instances, single)) from None
    if not (np.all(rows >= LOW) and np.all(rows <= HIGH)):  # NaN fails both comparisons
        raise InputError(_first_problem(instances, single))
    return rows


def _first_problem(instances: list[Any], single: bool) -> str:
    for index, row in enumerate(instances):
        where = "" if single else f"instance {index}: "
        if not isinstance(row, dict):
            return f"{where}expected an object with {', '.join(METRICS)}"
        for name in METRICS:
            if name not in row or row[name] is None:
                return f"{where}{name} is missing"
            try:
                problem = metric_problem(name, row[name])
            except OverflowError:
                problem = f"{name} is out of range"
            if problem:
                return f"{where}{problem}"
    return "invalid metric values"


def _keys(instances: list[dict[str, Any]]) -> list[tuple[str, datetime]] | None:
    """The optional service and timestamp that let analytics compare a prediction with the truth."""
    first = instances[0]
    if not isinstance(first, dict) or "service" not in first or "timestamp" not in first:
        return None
    try:
        return [(str(row["service"]), parse_timestamp(row["timestamp"])) for row in instances]
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
