"""Metrics of the whole instance: prometheus-client's multiprocess mode across uvicorn workers.

With `PROMETHEUS_MULTIPROC_DIR` set (`automatrix serve --workers N` sets it for N > 1), every
worker writes its metrics to files in that folder and `/metrics`, answered by any worker,
reads all of them (`MultiProcessCollector`): counters and histograms are summed over the
workers, the per-worker gauges carry a `pid` label. Without it there is one process and
`/metrics` reads its own registry.

The gauges that mirror in-memory state (predictions, live clients) are set by each worker
every `REFRESH_S` seconds in multiprocess mode (a scrape reaches one worker only), and on each
scrape of the worker that answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.samples import Sample

if TYPE_CHECKING:
    from serving.state import AppState

REFRESH_S = 1.0
ENV = "PROMETHEUS_MULTIPROC_DIR"
# How the workers' values of a gauge join: summed (over live workers, or all that ever ran),
# the live maximum, or each live worker's own series.
Mode = Literal["sum", "livesum", "livemax", "liveall"]


def multiprocess() -> bool:
    return bool(os.environ.get(ENV))


class WorkerGauges:
    """Per-worker state as gauges that add up over the workers (or show each, by `pid`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, mode: Mode, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(
                f"automatrix_{name}", text, list(labels), registry=registry, multiprocess_mode=mode
            )

        self.started = gauge("worker_start_time_seconds", "when this worker started", "liveall")
        self.requests = gauge("worker_http_requests", "HTTP requests this worker served", "liveall")
        self.last_minute = gauge(
            "http_requests_last_minute",
            "HTTP requests in the last 60 s",
            "livesum",
            ("method", "route"),
        )
        self.by_version = gauge(
            "prediction_rows_by_version", "rows scored per model version", "sum", ("version",)
        )
        self.lost = gauge("prediction_records_lost", "analytics records dropped", "sum")
        self.awaiting = gauge("prediction_awaiting_truth", "keyed predictions kept", "livesum")
        self.batches = gauge("prediction_batches", "micro-batches run", "sum")
        self.batch_rows = gauge("prediction_batch_rows", "rows in micro-batches", "sum")
        self.started.set(time.time())

    def refresh(self, state: AppState) -> None:
        report = state.stats.report()
        self.requests.set(sum(e["requests"] for e in report))
        for entry in report:
            self.last_minute.labels(entry["method"], entry["endpoint"]).set(
                round(entry["requests_per_s"] * 60)
            )
        for version, rows in list(state.predictions.by_version.items()):
            self.by_version.labels(version).set(rows)
        self.lost.set(state.predictions.lost)
        self.awaiting.set(len(state.predictions.keyed))
        self.batches.set(state.batcher.batches)
        self.batch_rows.set(state.batcher.rows)


def exposition(state: AppState) -> bytes:
    """The text `/metrics` answers: the whole instance in multiprocess mode, else this process."""
    state.refresh_gauges()
    return generate_latest(instance_registry() if multiprocess() else state.registry)


def instance_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


async def keep_fresh(state: AppState) -> None:
    """Sets this worker's gauges every REFRESH_S seconds (multiprocess mode only)."""
    while True:
        await asyncio.sleep(REFRESH_S)
        state.refresh_gauges()


def worker_exited() -> None:
    """Drops this worker's live gauges from the instance's metrics (on a clean exit)."""
    if multiprocess():
        mark_process_dead(os.getpid())


def samples(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    """Every sample of the registry, by sample name."""
    found: dict[str, list[Sample]] = defaultdict(list)
    for family in registry.collect():
        for sample in family.samples:
            found[sample.name].append(sample)
    return found


def workers(found: dict[str, list[Sample]]) -> list[dict[str, Any]]:
    """The live workers, by pid, with the requests each served."""
    served = {s.labels["pid"]: s.value for s in found.get("automatrix_worker_http_requests", [])}
    return [
        {"pid": int(s.labels["pid"]), "requests": int(served.get(s.labels["pid"], 0))}
        for s in sorted(
            found.get("automatrix_worker_start_time_seconds", []), key=lambda s: s.value
        )
    ]
