"""The ingestion flow: fetch a window of samples from a source, validate them, upsert them.

With no `source`, the settings choose (`Settings.scheduled_source`): the simulator only where
neither PROMETHEUS_URL nor SCRAPE_TARGETS nor INGEST_SOURCE is set. What a source could not
give (a query that returned nothing, an unreachable Prometheus chunk or scrape target) is in the
result's `missing`, by name; nothing is ever stored in its place.

The flow only orchestrates: the backfill's chunk loop (`monitoring.sources.backfill`) and the
scrape's two rounds (`scrape.scrape_round`) are plain functions, given these tasks (each retried
with backoff) as their fetch, their store and their reading of the targets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import State

from flows.orchestrate import react_on_arrival
from monitoring.config import get_settings
from monitoring.samples import METRICS
from monitoring.sources import backfill, csv_files, mapping, prometheus, scrape, simulator
from monitoring.store import control, ingestion
from monitoring.store.engine import open_store

Source = Literal["simulator", "prometheus", "csv", "scrape"]
DEFAULT_BACKFILL = timedelta(days=3)
BACKOFF_S: list[float] = [1.0, 2.0, 4.0]  # between the retries of a call to Prometheus or a target
TIMEOUT_S = 30
CHECK_EXPIRES = timedelta(days=1)  # a mapping Prometheus accepted is checked again after a day


@dataclass
class Outcome:
    start: datetime
    end: datetime
    reports: list[ingestion.IngestReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    replicas: set[tuple[str, str]] = field(default_factory=set)


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
    source: Source,
    start: datetime,
    end: datetime,
    csv_path: str | None,
    services: list[str] | None = None,
) -> list[Any]:
    if source == "simulator":
        window = simulator.simulate(start, end, services or simulator.DEFAULT_SERVICES)
        ingestion.store_incidents(open_store(get_settings().database_url), window.incidents)
        return list(window.samples)
    if csv_path is None:
        raise ValueError("source=csv needs csv_path")
    return csv_files.read_csv(Path(csv_path))


@task(retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def store(rows: list[Any]) -> ingestion.IngestReport:
    return ingestion.store_batch(open_store(get_settings().database_url), rows)


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record(source: Source, start: datetime, end: datetime, report: ingestion.IngestReport) -> None:
    ingestion.record_run(open_store(get_settings().database_url), source, start, end, report)


def _worth_retrying(task: Any, run: Any, state: State[Any]) -> bool:
    """A refused mapping or a page without a metric is the same on the next try."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, (mapping.MappingError, scrape.MissingMetric))


def _check_key(_: Any, parameters: dict[str, Any]) -> str:
    return prometheus.check_key(parameters["url"], parameters["rules"])


@task(
    retries=len(BACKOFF_S),
    retry_delay_seconds=BACKOFF_S,
    retry_condition_fn=_worth_retrying,
    cache_key_fn=_check_key,
    cache_expiration=CHECK_EXPIRES,
    persist_result=True,
)
def check_queries(url: str, rules: mapping.Mapping) -> int:
    """Has Prometheus parse the mapping's templates. The result is cached (persisted, so across
    the worker's per-run processes) by server and templates: a mapping is checked when it is new
    or changed, and once a day, not on every scheduled run. A refusal is never cached."""
    with httpx.Client(timeout=TIMEOUT_S) as client:
        problems = prometheus.check_queries(url, rules, client)
    if problems:
        raise mapping.MappingError("\n".join(problems))
    return len(METRICS)


@task(retries=len(BACKOFF_S), retry_delay_seconds=BACKOFF_S, cache_policy=NO_CACHE)
def fetch_chunk(
    url: str, rules: mapping.Mapping, first: datetime, last: datetime, step: timedelta
) -> prometheus.RangeResult:
    with httpx.Client(timeout=TIMEOUT_S) as client:
        return prometheus.fetch_range(url, rules, first, last, step, client)


@task(cache_policy=NO_CACHE)
def explain_empty(
    url: str, rules: mapping.Mapping, metric: str, first: datetime, last: datetime, step: timedelta
) -> str:
    """Why a metric's query returned nothing: the metric names it selects that are absent."""
    with httpx.Client(timeout=TIMEOUT_S) as client:
        absent = prometheus.absent_metrics(url, rules.query(metric, step), first, last, client)
    why = f"Prometheus has no {', '.join(absent)}" if absent else "its series matched nothing"
    return f"{metric}: the query ({rules.where(metric)}) returned no series: {why}"


@task(
    retries=len(BACKOFF_S),
    retry_delay_seconds=BACKOFF_S,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def scrape_target(target: scrape.Target) -> scrape.Counters:
    with httpx.Client(timeout=TIMEOUT_S) as client:
        return scrape.scrape(target, client, datetime.now(UTC))


def _ingest_prometheus(
    url: str, rules: mapping.Mapping, window: tuple[datetime, datetime], step: timedelta
) -> Outcome:
    check_queries(url, rules)
    done = backfill.backfill(
        window,
        step,
        fetch=lambda first, last: fetch_chunk(url, rules, first, last, step),
        store=store,  # replica rows: the store adds each service's combined row
        explain=lambda metric, first, last: explain_empty(url, rules, metric, first, last, step),
    )
    return Outcome(window[0], done.end, done.reports, done.missing, done.replicas)


def _ingest_scrape(interval_s: float, memory_limit_bytes: float) -> Outcome:
    started = datetime.now(UTC)
    done = scrape.scrape_round(
        _scrape_targets(), _scrape_all, time.sleep, _now, interval_s, memory_limit_bytes
    )
    outcome = Outcome(started, max(started, done.stamp), missing=done.missing)
    outcome.reports.append(store(done.readings))
    outcome.replicas.update((r.service, r.replica) for r in done.readings)
    return outcome


def _now() -> datetime:
    return datetime.now(UTC)


def _scrape_targets() -> list[scrape.Target]:
    settings = get_settings()
    if settings.scrape_targets:
        return scrape.targets_from_settings(settings.scrape_targets)
    endpoints = control.desired(open_store(settings.database_url)).endpoints
    return scrape.targets_from_endpoints((e.name, e.url, e.service) for e in endpoints)


def _scrape_all(targets: list[scrape.Target]) -> dict[scrape.Target, scrape.Counters | str]:
    """All targets at once, each its own retried task: a dead one delays only itself."""
    futures: list[PrefectFuture[scrape.Counters]] = [scrape_target.submit(t) for t in targets]
    read: dict[scrape.Target, scrape.Counters | str] = {}
    for target, future in zip(targets, futures, strict=True):
        try:
            read[target] = future.result()
        except Exception as exc:  # its retries are spent: the round reports it by name
            read[target] = str(exc)
    return read


@flow(name="metrics-ingest", log_prints=True)
def ingest_flow(
    source: Source | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    csv_path: str | None = None,
    prometheus_url: str | None = None,
    mapping_path: str | None = None,
    step_s: int = 60,
    services: list[str] | None = None,
) -> dict[str, Any]:
    """Ingest one window from `source` (default: the one the settings name); with no `start`,
    continue from the last run. `scrape` reads the present, so it takes no window. `services`
    names the simulator's services (default: its five)."""
    logger = get_run_logger()
    settings = get_settings()
    chosen: Source = source or settings.scheduled_source()  # type: ignore[assignment]
    if chosen == "scrape":
        if start is not None or end is not None:
            raise ValueError("source=scrape reads the targets now; it takes no start or end")
        rules = mapping.load(Path(mapping_path) if mapping_path else settings.prometheus_mapping)
        outcome = _ingest_scrape(settings.scrape_interval_s, rules.memory_limit_bytes)
    elif chosen == "prometheus":
        url = prometheus_url or settings.prometheus_url
        if not url:
            raise ValueError("source=prometheus needs PROMETHEUS_URL or prometheus_url")
        rules = mapping.load(Path(mapping_path) if mapping_path else settings.prometheus_mapping)
        window = resolve_window(chosen, start, end)
        outcome = _ingest_prometheus(url, rules, window, timedelta(seconds=step_s))
    else:
        window = resolve_window(chosen, start, end)
        outcome = Outcome(*window, [store(fetch(chosen, *window, csv_path, services))])
    result = _finish(chosen, outcome, logger)
    result["reaction"] = _react(outcome, logger)
    return result


def _react(outcome: Outcome, logger: Any) -> dict[str, Any] | None:
    """Detection on arrival and the replicas' healing for what was stored; its failure is logged,
    not raised (the rows are stored, and the five-minute cycle scores them too)."""
    services = sorted({s for r in outcome.reports for s in r.services})
    if not services:
        return None
    state = react_on_arrival(services, datetime.now(UTC), return_state=True)
    if state.is_failed():
        logger.warning("detection on arrival failed: %s", state.message)
        return None
    reaction: dict[str, Any] = state.result()
    for a in reaction["actions"]:
        logger.info("arrival: %s %s (%s)", a["kind"], a["replica"] or a["service"], a["state"])
    return reaction


def _finish(source: Source, outcome: Outcome, logger: Any) -> dict[str, Any]:
    report = ingestion.IngestReport(
        accepted=sum(r.accepted for r in outcome.reports),
        rejected=sum(r.rejected for r in outcome.reports),
        reasons=[reason for r in outcome.reports for reason in r.reasons],
    )
    if outcome.end > outcome.start or source == "scrape":
        record(source, outcome.start, outcome.end, report)
    for reason in report.reasons[:20]:
        logger.warning("rejected %s", reason)
    for what in outcome.missing:
        logger.warning("missing: %s", what)
    logger.info("ingested %d samples, rejected %d", report.accepted, report.rejected)
    return {
        "source": source,
        "start": outcome.start.isoformat(),
        "end": outcome.end.isoformat(),
        "accepted": report.accepted,
        "rejected": report.rejected,
        "reasons": report.reasons[:100],
        "missing": outcome.missing,
        "replicas": len(outcome.replicas),
    }
