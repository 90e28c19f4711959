"""A metric sample and its physical bounds: what may enter the store and why not."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import numpy as np

METRICS: tuple[str, ...] = (
    "cpu_usage",
    "memory_usage",
    "network_latency",
    "error_rate",
    "request_count",
)

# (low, high) per metric: percentages are 0-100, latency is milliseconds, counts per minute.
BOUNDS: dict[str, tuple[float, float]] = {
    "cpu_usage": (0.0, 100.0),
    "memory_usage": (0.0, 100.0),
    "network_latency": (0.0, 600_000.0),
    "error_rate": (0.0, 100.0),
    "request_count": (0.0, 1e12),
}


@dataclass(frozen=True, slots=True)
class Sample:
    service: str
    timestamp: datetime
    cpu_usage: float
    memory_usage: float
    network_latency: float
    error_rate: float
    request_count: float


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Validated:
    accepted: list[Sample]
    rejected: list[Rejection]


def metric_problem(name: str, value: Any) -> str | None:
    """Why `value` is not a valid reading of metric `name`, or None when it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    low, high = BOUNDS[name]
    if not low <= value <= high:
        return f"{name}={value} is outside [{low:g}, {high:g}]"
    return None


def parse_timestamp(value: Any) -> datetime:
    """A timezone-aware UTC datetime from a datetime, an ISO string or epoch seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"timestamp must be ISO 8601 or epoch seconds, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_sample(raw: Mapping[str, Any]) -> Sample:
    """A validated sample; raises ValueError naming the first problem."""
    service = raw.get("service")
    if not isinstance(service, str) or not service.strip():
        raise ValueError("service must be a non-empty string")
    if "timestamp" not in raw:
        raise ValueError("timestamp is missing")
    timestamp = parse_timestamp(raw["timestamp"])
    values: dict[str, float] = {}
    for name in METRICS:
        if name not in raw or raw[name] is None:
            raise ValueError(f"{name} is missing")
        problem = metric_problem(name, raw[name])
        if problem:
            raise ValueError(problem)
        values[name] = float(raw[name])
    return Sample(service=service.strip(), timestamp=timestamp, **values)


def validate(rows: Iterable[Mapping[str, Any] | Sample]) -> Validated:
    """Split a batch into valid samples and rejections with reasons; one bad row loses nothing else."""
    rows = list(rows)
    trusted = _within_bounds(rows)
    accepted: list[Sample] = []
    rejected: list[Rejection] = []
    for index, row in enumerate(rows):
        if trusted[index]:
            accepted.append(row)  # type: ignore[arg-type]
            continue
        try:
            accepted.append(to_sample(_as_mapping(row)))
        except (ValueError, TypeError, OverflowError) as exc:
            rejected.append(Rejection(index=index, reason=str(exc)))
    return Validated(accepted=accepted, rejected=rejected)


def _within_bounds(rows: list[Any]) -> np.ndarray:
    """Which rows are already-typed Samples inside every bound, checked in one vectorised pass."""
    typed = np.fromiter(
        (
            isinstance(r, Sample) and r.timestamp.tzinfo is not None and bool(r.service)
            for r in rows
        ),
        dtype=bool,
        count=len(rows),
    )
    if not typed.any():
        return typed
    readings = attrgetter(*METRICS)
    missing = (np.nan,) * len(METRICS)
    values = np.array(
        [readings(r) if t else missing for r, t in zip(rows, typed.tolist(), strict=True)],
        dtype=np.float64,
    )
    low = np.array([BOUNDS[m][0] for m in METRICS])
    high = np.array([BOUNDS[m][1] for m in METRICS])
    with np.errstate(invalid="ignore"):
        inside = (
            np.isfinite(values).all(axis=1)
            & (values >= low).all(axis=1)
            & (values <= high).all(axis=1)
        )
    return typed & inside


def _as_mapping(row: Mapping[str, Any] | Sample) -> Mapping[str, Any]:
    if isinstance(row, Sample):
        return {field: getattr(row, field) for field in Sample.__slots__}
    return row
