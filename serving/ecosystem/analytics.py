"""Request and prediction analytics, kept in memory and fed off the request path."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

RATE_WINDOW_S = 60.0


@dataclass
class EndpointStats:
    count: int = 0
    errors: int = 0
    latencies: deque[tuple[float, float]] | None = None  # (finished at, seconds)

    def __post_init__(self) -> None:
        self.latencies = deque(maxlen=4096)


class RequestStats:
    """Per-endpoint counts and recent latencies (the last 4096 requests of each)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], EndpointStats] = defaultdict(EndpointStats)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        stats = self._by_key[(method, route)]
        stats.count += 1
        stats.errors += status >= 500
        stats.latencies.append((time.monotonic(), seconds))  # type: ignore[union-attr]

    def report(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            _endpoint_report(method, route, stats, now)
            for (method, route), stats in sorted(self._by_key.items(), key=lambda kv: kv[0][1])
        ]


def _endpoint_report(method: str, route: str, stats: EndpointStats, now: float) -> dict[str, Any]:
    recent = list(stats.latencies or ())
    seconds = np.array([s for _, s in recent]) if recent else np.zeros(0)
    in_window = sum(1 for at, _ in recent if now - at <= RATE_WINDOW_S)
    p50, p95, p99 = np.percentile(seconds, [50, 95, 99]) * 1000 if len(seconds) else (None,) * 3
    return {
        "method": method,
        "endpoint": route,
        "requests": stats.count,
        "errors_5xx": stats.errors,
        "requests_per_s": round(in_window / RATE_WINDOW_S, 3),
        "latency_ms": {"p50": _round(p50), "p95": _round(p95), "p99": _round(p99)},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    at: float
    version: str
    rows: int
    keys: list[tuple[str, datetime]] | None
    scores: np.ndarray
    inputs: np.ndarray | None = None  # the (rows, 5) request, for the shadow log


PredictionListener = Callable[[PredictionRecord], None]


class PredictionLog:
    """Predict handlers `offer` records (never blocking); a background task files them."""

    def __init__(self, keep: int = 50_000, queue_size: int = 10_000) -> None:
        self._queue: asyncio.Queue[PredictionRecord] = asyncio.Queue(maxsize=queue_size)
        self.by_version: dict[str, int] = defaultdict(int)
        self.requests = 0
        self.rows = 0
        self.lost = 0
        self.keyed: deque[tuple[str, datetime, float, str]] = deque(maxlen=keep)
        self.listeners: list[PredictionListener] = []  # each filed record is also given to these

    def offer(self, record: PredictionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.lost += 1  # analytics may lose a record under overload; predictions never wait

    async def run(self) -> None:
        while True:
            self._file(await self._queue.get())

    def _file(self, record: PredictionRecord) -> None:
        self.requests += 1
        self.rows += record.rows
        self.by_version[record.version] += record.rows
        if record.keys is not None:
            for (service, moment), score in zip(record.keys, record.scores.tolist(), strict=True):
                self.keyed.append((service, moment, score, record.version))
        for listener in self.listeners:
            listener(record)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rows": self.rows,
            "by_version": dict(self.by_version),
            "lost_records": self.lost,
            "awaiting_truth": len(self.keyed),
        }


def model_error(engine: Any, keyed: list[tuple[str, datetime, float, str]]) -> dict[str, Any]:
    """Compares logged predictions with the real score, once the store holds the minutes after."""
    from monitoring.neuroweaver.labels import HORIZON_MINUTES, samples_frame, truth_of
    from monitoring.store.metrics import read_samples

    empty: dict[str, Any] = {"compared": 0, "mae": None, "rmse": None, "by_version": {}}
    if not keyed:
        return empty
    from sqlalchemy.orm import Session

    services = sorted({service for service, *_ in keyed})
    start = min(moment for _, moment, *_ in keyed)
    end = max(moment for _, moment, *_ in keyed) + timedelta(minutes=HORIZON_MINUTES + 1)
    with Session(engine) as session:
        samples = read_samples(session, start=start, end=end, services=services)
    if not samples:
        return empty
    return _errors(keyed, truth_of(samples_frame(samples))) or empty


def _errors(
    keyed: list[tuple[str, datetime, float, str]], truth: dict[tuple[str, datetime], float]
) -> dict[str, Any] | None:
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for service, moment, score, version in keyed:
        real = truth.get((service, moment))
        if real is not None:
            pairs[version].append((score, real))
    if not pairs:
        return None
    every = np.array([p for group in pairs.values() for p in group])
    return {
        "compared": len(every),
        **_mae_rmse(every),
        "by_version": {v: {"compared": len(g), **_mae_rmse(np.array(g))} for v, g in pairs.items()},
    }


def _mae_rmse(pairs: np.ndarray) -> dict[str, float]:
    diff = pairs[:, 0] - pairs[:, 1]
    return {
        "mae": round(float(np.abs(diff).mean()), 6),
        "rmse": round(float(np.sqrt((diff**2).mean())), 6),
    }


# Across workers (multiprocess mode): the same report, read from every worker's metrics.
def instance_endpoints(found: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Per endpoint over all workers; latency percentiles are estimated from histogram buckets."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for sample in found.get("automatrix_http_requests_total", []):
        key = (sample.labels["method"], sample.labels["route"])
        counts[key][0] += int(sample.value)
        counts[key][1] += int(sample.value) if int(sample.labels["status"]) >= 500 else 0
    recent = {
        (s.labels["method"], s.labels["route"]): s.value
        for s in found.get("automatrix_http_requests_last_minute", [])
    }
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for sample in found.get("automatrix_http_request_duration_seconds_bucket", []):
        key = (sample.labels["method"], sample.labels["route"])
        buckets[key].append((float(sample.labels["le"]), sample.value))
    return [
        {
            "method": method,
            "endpoint": route,
            "requests": total,
            "errors_5xx": errors,
            "requests_per_s": round(recent.get((method, route), 0.0) / RATE_WINDOW_S, 3),
            "latency_ms": {
                name: _round(_quantile(sorted(buckets[(method, route)]), q))
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            },
        }
        for (method, route), (total, errors) in sorted(counts.items(), key=lambda kv: kv[0][1])
    ]


def _quantile(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """Milliseconds, interpolated within the bucket that holds the quantile (as PromQL does)."""
    if not cumulative or cumulative[-1][1] == 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if upper == float("inf"):
                return lower * 1000
            share = (rank - below) / (count - below) if count > below else 1.0
            return (lower + (upper - lower) * share) * 1000
        lower, below = upper, count
    return lower * 1000


def instance_predictions(found: dict[str, list[Any]]) -> dict[str, Any]:
    """The prediction summary over all workers."""

    def total(name: str) -> float:
        return sum(s.value for s in found.get(f"automatrix_{name}", []))

    batches = total("prediction_batches")
    return {
        "requests": int(total("prediction_requests")),
        "rows": int(total("prediction_rows")),
        "by_version": {
            s.labels["version"]: int(s.value)
            for s in found.get("automatrix_prediction_rows_by_version", [])
        },
        "lost_records": int(total("prediction_records_lost")),
        "awaiting_truth": int(total("prediction_awaiting_truth")),
        "batches": int(batches),
        "rows_per_batch": round(total("prediction_batch_rows") / batches, 2) if batches else None,
    }
