"""Prometheus' HTTP API: the mapping's five queries over a window, one reading per replica.

`chunks` splits a backfill so that no query_range asks for more points per series than
Prometheus allows; `check_queries` has the server parse every template (Prometheus' own parser,
through its query endpoint) before anything is fetched, and `check_key` names what that check
depends on, so that a caller checks each mapping once rather than on every run; `fetch_range`
joins the five results by service, replica and instant. A metric that returned nothing, a series without the service or
replica label, and an instant where a metric is NaN are reported by name, never filled in.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from monitoring.samples import METRICS, Sample
from monitoring.sources.mapping import Mapping

MAX_POINTS = 11_000  # Prometheus refuses a query_range with more points per series
CHUNK_POINTS = 10_000  # what one chunk asks for, below that limit
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}


class PrometheusError(RuntimeError):
    """Prometheus could not be reached, or answered with something other than a result."""


@dataclass
class RangeResult:
    readings: list[Sample] = field(default_factory=list)  # one row per replica and instant
    empty: list[str] = field(default_factory=list)  # metrics whose query returned no series
    problems: list[str] = field(default_factory=list)


def chunks(
    start: datetime, end: datetime, step: timedelta, points: int = CHUNK_POINTS
) -> list[tuple[datetime, datetime]]:
    """[first, last] instants on the step's grid covering [start, end], each chunk with at most
    `points` instants. The grid (multiples of the step since the epoch) makes a re-run of the
    same window produce the same timestamps, so storing it again overwrites instead of adding."""
    seconds = int(step.total_seconds())
    if seconds < 1 or seconds != step.total_seconds():
        raise ValueError(f"step must be a whole number of seconds, got {step}")
    if not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points must be in [1, {MAX_POINTS}], got {points}")
    first = -(-math.ceil(start.timestamp()) // seconds)
    last = math.floor(end.timestamp()) // seconds
    return [
        (_instant(k * seconds), _instant(min(k + points - 1, last) * seconds))
        for k in range(first, last + 1, points)
    ]


def _instant(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def check_queries(base_url: str, mapping: Mapping, client: httpx.Client) -> list[str]:
    """Each template that Prometheus refuses, as `file:line: metric: reason`."""
    problems = []
    for metric in METRICS:
        query = mapping.query(metric, mapping.rate_window)
        response = _get(client, base_url, "/api/v1/query", {"query": query})
        if response.status_code in (400, 422):
            error = _body(response).get("error", response.text[:200])
            problems.append(f"{mapping.where(metric)}: {metric}: Prometheus refuses it: {error}")
        elif response.status_code != 200:
            raise PrometheusError(f"Prometheus at {base_url} answered {response.status_code}")
    return problems


def check_key(base_url: str, mapping: Mapping) -> str:
    """What `check_queries`' answer depends on: the server and the five queries it parses. A
    mapping file that has not changed (same path, same content) has the same key; an edit that
    changes a template, a label or the rate window gives a new one."""
    digest = hashlib.sha256(base_url.rstrip("/").encode())
    for metric in METRICS:
        digest.update(b"\0" + mapping.query(metric, mapping.rate_window).encode())
    return f"promql-check-{digest.hexdigest()[:32]}"


def fetch_range(
    base_url: str,
    mapping: Mapping,
    start: datetime,
    end: datetime,
    step: timedelta,
    client: httpx.Client,
) -> RangeResult:
    """The replicas' readings at each step in [start, end] (one chunk: see `chunks`)."""
    series = {
        metric: _query_range(client, base_url, mapping.query(metric, step), start, end, step)
        for metric in METRICS
    }
    result = RangeResult(empty=[m for m in METRICS if not series[m]])
    result.readings = _join(series, mapping, result.problems)
    return result


def absent_metrics(
    base_url: str, query: str, start: datetime, end: datetime, client: httpx.Client
) -> list[str]:
    """The metric names `query` selects that Prometheus holds no series of in [start, end]."""
    params = {"start": start.timestamp(), "end": end.timestamp()}
    response = _get(client, base_url, "/api/v1/label/__name__/values", params)
    known = set(_body(response).get("data") or [])
    return [name for name in selected_names(query) if name not in known]


def selected_names(query: str) -> list[str]:
    """The metric names a PromQL expression selects, read from its text: strings, label
    matchers, ranges and grouping clauses are removed, and what is left that is no function,
    keyword or number is a metric name. Only used to explain an empty result."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", query)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", text)
    return list(dict.fromkeys(n for n in names if n.lower() not in _KEYWORDS))


def _get(client: httpx.Client, base_url: str, path: str, params: dict[str, Any]) -> httpx.Response:
    try:
        return client.get(f"{base_url.rstrip('/')}{path}", params=params)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {base_url} unreachable: {exc}") from exc


def _body(response: httpx.Response) -> dict[str, Any]:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return {}
    body = response.json()
    return body if isinstance(body, dict) else {}


def _query_range(
    client: httpx.Client,
    base_url: str,
    query: str,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> list[dict[str, Any]]:
    params = {
        "query": query,
        "start": start.timestamp(),
        "end": end.timestamp(),
        "step": f"{int(step.total_seconds())}s",
    }
    response = _get(client, base_url, "/api/v1/query_range", params)
    body = _body(response)
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"query {query!r} failed: {body.get('error', response.text[:200])}")
    return list(body["data"]["result"])


def _join(
    series: dict[str, list[dict[str, Any]]], mapping: Mapping, problems: list[str]
) -> list[Sample]:
    """Replica rows where all five metrics have a finite value; what is left out is counted."""
    points: dict[tuple[str, str, float], dict[str, float]] = defaultdict(dict)
    labels = (mapping.service_label, mapping.replica_label)
    for metric, results in series.items():
        unlabelled = not_finite = 0
        for result in results:
            service, replica = (result["metric"].get(label) for label in labels)
            if not service or not replica:
                unlabelled += 1
                continue
            for stamp, text in result["values"]:
                value = float(text)
                if math.isfinite(value):
                    points[(service, replica, float(stamp))][metric] = value
                else:
                    not_finite += 1
        if unlabelled:
            problems.append(
                f"{metric}: {unlabelled} series without the label {' or '.join(labels)}"
            )
        if not_finite:
            problems.append(f"{metric}: {not_finite} points NaN or infinite (no request?)")
    complete = {key: values for key, values in points.items() if len(values) == len(METRICS)}
    if len(complete) < len(points):
        problems.append(f"{len(points) - len(complete)} replica instants lack a metric: left out")
    return [
        Sample(service=service, timestamp=_instant(stamp), replica=replica, **values)
        for (service, replica, stamp), values in sorted(complete.items())
    ]
