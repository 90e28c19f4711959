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


# The replica of a service's own, combined row: what a source that sees no replicas stores, and
# what every row stored before replicas existed became (migration 0008).
SERVICE_ROW = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a service, or of one of its replicas (`replica`, the RelayCore endpoint
    name); `replica` is SERVICE_ROW for the service as a whole."""

    service: str
    timestamp: datetime
    cpu_usage: float
    memory_usage: float
    network_latency: float
    error_rate: float
    request_count: float
    replica: str = SERVICE_ROW


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
    replica = raw.get("replica")
    if replica is None:
        replica = SERVICE_ROW
    elif not isinstance(replica, str) or not replica.strip():
        raise ValueError("replica must be a non-empty string when given")
    values: dict[str, float] = {}
    for name in METRICS:
        if name not in raw or raw[name] is None:
            raise ValueError(f"{name} is missing")
        problem = metric_problem(name, raw[name])
        if problem:
            raise ValueError(problem)
        values[name] = float(raw[name])
    return Sample(service=service.strip(), timestamp=timestamp, replica=replica.strip(), **values)


def with_service_totals(samples: Iterable[Sample]) -> list[Sample]:
    """The samples, plus a combined service row for every (service, instant) that has replica
    rows and no service row of its own. CPU and memory are the replicas' mean, requests their
    sum; latency and error rate are weighted by each replica's requests (a replica that served
    nothing says nothing about them), or plainly averaged when none served any."""
    samples = list(samples)
    has_own = {(s.service, s.timestamp) for s in samples if s.replica == SERVICE_ROW}
    groups: dict[tuple[str, datetime], list[Sample]] = {}
    for sample in samples:
        key = (sample.service, sample.timestamp)
        if sample.replica != SERVICE_ROW and key not in has_own:
            groups.setdefault(key, []).append(sample)
    return samples + [_combined(service, at, group) for (service, at), group in groups.items()]


def _combined(service: str, at: datetime, group: list[Sample]) -> Sample:
    requests = np.array([r.request_count for r in group])
    total = float(requests.sum())
    weights = requests / total if total > 0 else np.full(len(group), 1 / len(group))
    values = np.array([attrgetter(*METRICS)(r) for r in group], dtype=np.float64)
    mean, weighted = values.mean(axis=0), weights @ values
    by_name = dict(zip(METRICS, range(len(METRICS)), strict=True))
    return Sample(
        service=service,
        timestamp=at,
        cpu_usage=float(mean[by_name["cpu_usage"]]),
        memory_usage=float(mean[by_name["memory_usage"]]),
        network_latency=float(weighted[by_name["network_latency"]]),
        error_rate=float(weighted[by_name["error_rate"]]),
        request_count=total,
    )


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
