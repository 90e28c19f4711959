"""The ingestion flow: fetch a window of samples from a source, validate them, upsert them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from monitoring.config import get_settings
from monitoring.sources import csv_files, prometheus, simulator
from monitoring.store import ingestion
from monitoring.store.engine import open_store

Source = Literal["simulator", "prometheus", "csv"]
DEFAULT_BACKFILL = timedelta(days=3)


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def resolve_window(
    source: Source, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """An explicit window, or what came since the last run of this source (three days at first)."""
    end = (end or datetime.now(UTC)).astimezone(UTC)
    if start is None:
        previous = ingestion.last_window_end(open_store(get_settings().database_url), source)
        start = previous if previous is not None else end - DEFAULT_BACKFILL
    start = start.astimezone(UTC)
    if start >= end:
        raise ValueError(
            f"empty window: start {start.isoformat()} is not before end {end.isoformat()}"
        )
    return start, end


@task(retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def fetch(
    source: Source, start: datetime, end: datetime, csv_path: str | None, prometheus_url: str
) -> list[Any]:
    if source == "simulator":
        window = simulator.simulate(start, end)
        ingestion.store_incidents(open_store(get_settings().database_url), window.incidents)
        return list(window.samples)
    if source == "prometheus":
        return prometheus.fetch(prometheus_url, start, end)
    if csv_path is None:
        raise ValueError("source=csv needs csv_path")
    return csv_files.read_csv(Path(csv_path))


@task(retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def store(rows: list[Any]) -> ingestion.IngestReport:
    return ingestion.store_batch(open_store(get_settings().database_url), rows)


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record(source: Source, start: datetime, end: datetime, report: ingestion.IngestReport) -> None:
    ingestion.record_run(open_store(get_settings().database_url), source, start, end, report)


@flow(name="metrics-ingest", log_prints=True)
def ingest_flow(
    source: Source = "simulator",
    start: datetime | None = None,
    end: datetime | None = None,
    csv_path: str | None = None,
    prometheus_url: str = "http://127.0.0.1:9090",
) -> dict[str, Any]:
    """Ingest one window from `source`; with no `start`, continue from the last run."""
    logger = get_run_logger()
    window_start, window_end = resolve_window(source, start, end)
    report = store(fetch(source, window_start, window_end, csv_path, prometheus_url))
    record(source, window_start, window_end, report)
    for reason in report.reasons[:20]:
        logger.warning("rejected %s", reason)
    logger.info("ingested %d samples, rejected %d", report.accepted, report.rejected)
    return {
        "source": source,
        "start": window_start.isoformat(),
        "end": window_end.isoformat(),
        "accepted": report.accepted,
        "rejected": report.rejected,
        "reasons": report.reasons[:100],
    }
