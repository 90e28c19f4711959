"""The embedded scrape source: what Prometheus' agent mode would do without a Prometheus server.

It reads the `/metrics` page of each target (the registered RelayCore endpoints, at their base
URL, or SCRAPE_TARGETS), parses it with prometheus-client's own parser, and turns two scrapes of
one target into its five metrics. Rates need two scrapes; `scrape_round` takes both in the same
run, `SCRAPE_INTERVAL_S` apart, so no counter is kept between runs. The reading of the targets,
the clock and the sleep are injected: the flow passes its retried, concurrent task, tests a plain
`reader` and a clock of their own. The names read are the defaults
of deploy/prometheus-mapping.yaml (OpenTelemetry HTTP and prometheus-client's process metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitoring.samples import Sample

CPU = "process_cpu_seconds_total"
MEMORY = "process_resident_memory_bytes"
DURATION = "http_server_request_duration_seconds"  # the histogram's family name
STATUS = "http_response_status_code"


class ScrapeError(RuntimeError):
    """A target could not be read, or its page lacks a metric the five are computed from."""


class MissingMetric(ScrapeError):
    """The target answered, but its page lacks a metric: reading it again will not help."""


@dataclass(frozen=True, slots=True)
class Target:
    service: str
    replica: str
    url: str  # of its /metrics page


@dataclass(frozen=True, slots=True)
class Counters:
    """What one scrape of one target read: counters (cumulative) and the resident memory."""

    at: datetime
    cpu_seconds: float
    memory_bytes: float
    requests: float
    errors: float
    duration_seconds: float


def targets_from_endpoints(endpoints: Iterable[tuple[str, str, str | None]]) -> list[Target]:
    """(name, url, service) of registered endpoints: the replica is the endpoint's name, its
    page `/metrics` at the base URL (the URL without its path), its service the endpoint's
    service or, when it has none, its name."""
    targets = []
    for name, url, service in endpoints:
        parts = urlsplit(url)
        targets.append(Target(service or name, name, f"{parts.scheme}://{parts.netloc}/metrics"))
    return targets


def targets_from_settings(groups: Mapping[str, list[str]]) -> list[Target]:
    """SCRAPE_TARGETS, {"service": ["http://host:port", ...]}: as in Prometheus' static
    configs, the replica is the target's host:port (its `instance`)."""
    targets = []
    for service, urls in groups.items():
        for url in urls:
            parts = urlsplit(url)
            path = parts.path if parts.path not in ("", "/") else "/metrics"
            targets.append(Target(service, parts.netloc, f"{parts.scheme}://{parts.netloc}{path}"))
    return targets


def scrape(target: Target, client: httpx.Client, at: datetime) -> Counters:
    try:
        response = client.get(target.url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ScrapeError(
            f"{target.service} {target.replica}: {target.url} unreadable: {exc}"
        ) from exc
    return read(response.text, at, f"{target.service} {target.replica}")


def read(page: str, at: datetime, who: str = "target") -> Counters:
    """The counters in one exposition page. A family that is declared without samples (a
    labelled histogram before its first request) reads as zero; one that is absent is an error."""
    totals = {"cpu": 0.0, "memory": 0.0, "requests": 0.0, "errors": 0.0, "duration": 0.0}
    seen: set[str] = set()
    for family in text_string_to_metric_families(page):
        seen.add(family.name)
        for sample in family.samples:
            _add(totals, sample.name, sample.labels, sample.value)
    absent = [name for name, family in _FAMILIES.items() if not seen & family]
    if absent:
        raise MissingMetric(f"{who}: its page has no {', '.join(absent)}")
    return Counters(
        at,
        totals["cpu"],
        totals["memory"],
        totals["requests"],
        totals["errors"],
        totals["duration"],
    )


# The family names the parser may give each metric (a counter's loses its _total suffix).
_FAMILIES = {CPU: {CPU, "process_cpu_seconds"}, MEMORY: {MEMORY}, DURATION: {DURATION}}


def _add(totals: dict[str, float], name: str, labels: Mapping[str, str], value: float) -> None:
    if name == CPU:
        totals["cpu"] += value
    elif name == MEMORY:
        totals["memory"] += value
    elif name == f"{DURATION}_count":
        totals["requests"] += value
        if labels.get(STATUS, "").startswith("5"):
            totals["errors"] += value
    elif name == f"{DURATION}_sum":
        totals["duration"] += value


def rates(
    target: Target, before: Counters, after: Counters, memory_limit_bytes: float, stamp: datetime
) -> Sample:
    """The five metrics between two scrapes, as the replica's row at `stamp` (one instant for a
    whole round, so that the replicas of a service line up and the store can add their service's
    row). A counter that went down was reset (the
    replica restarted), so all of its current value is the increase, as in PromQL."""
    seconds = (after.at - before.at).total_seconds()
    if seconds <= 0:
        raise ValueError("the second scrape must come after the first")
    requests = _increase(before.requests, after.requests)
    if requests <= 0:
        raise ScrapeError(
            f"{target.service} {target.replica}: no request in {seconds:.0f} s, so no latency"
        )
    return Sample(
        service=target.service,
        replica=target.replica,
        timestamp=stamp,
        cpu_usage=min(100.0, 100 * _increase(before.cpu_seconds, after.cpu_seconds) / seconds),
        memory_usage=min(100.0, 100 * after.memory_bytes / memory_limit_bytes),
        network_latency=1000
        * _increase(before.duration_seconds, after.duration_seconds)
        / requests,
        error_rate=min(100.0, 100 * _increase(before.errors, after.errors) / requests),
        request_count=60 * requests / seconds,
    )


def _increase(before: float, after: float) -> float:
    return after - before if after >= before else after


# Each target's counters, or why it could not be read (its ScrapeError, or the retries' end).
ReadAll = Callable[[list[Target]], Mapping[Target, Counters | str]]


@dataclass
class Round:
    stamp: datetime
    readings: list[Sample] = field(default_factory=list)  # one row per replica
    missing: list[str] = field(default_factory=list)


def reader(client: httpx.Client, now: Callable[[], datetime]) -> ReadAll:
    """Reads the targets one after the other, without retries: the plain ReadAll."""

    def read_all(targets: list[Target]) -> dict[Target, Counters | str]:
        read: dict[Target, Counters | str] = {}
        for target in targets:
            try:
                read[target] = scrape(target, client, now())
            except ScrapeError as exc:
                read[target] = str(exc)
        return read

    return read_all


def scrape_round(
    targets: list[Target],
    read_all: ReadAll,
    sleep: Callable[[float], None],
    now: Callable[[], datetime],
    interval_s: float,
    memory_limit_bytes: float,
) -> Round:
    """Every target twice, `interval_s` apart, turned into one reading each at the second
    scrape's whole second. A target that fails either scrape, or that served nothing between
    them, is in `missing` by service and replica; the others are read."""
    if not targets:
        return Round(now(), missing=["no scrape target: set SCRAPE_TARGETS or register endpoints"])
    missing: list[str] = []
    before = _counters(targets, read_all(targets), missing)
    sleep(interval_s)
    stamp = now().replace(microsecond=0)
    after = _counters(list(before), read_all(list(before)), missing)
    done = Round(stamp, missing=missing)
    for target, counters in after.items():
        try:
            done.readings.append(rates(target, before[target], counters, memory_limit_bytes, stamp))
        except ScrapeError as exc:
            done.missing.append(str(exc))
    return done


def _counters(
    targets: list[Target], read: Mapping[Target, Counters | str], missing: list[str]
) -> dict[Target, Counters]:
    found = {}
    for target in targets:
        got = read.get(target, "not read")
        if isinstance(got, Counters):
            found[target] = got
        else:
            who = f"{target.service} {target.replica}: "
            missing.append(got if got.startswith(who) else who + got)
    return found
