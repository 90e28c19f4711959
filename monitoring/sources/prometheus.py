"""Prometheus' HTTP API: one `query_range` per metric, joined by service and timestamp."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from monitoring.samples import METRICS

# Defaults suit node_exporter; each is a PromQL whose result carries the `service_label`.
DEFAULT_QUERIES: dict[str, str] = {
    "cpu_usage": '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m])))',
    "memory_usage": "100 * (1 - avg by (instance) (node_memory_MemAvailable_bytes"
    " / node_memory_MemTotal_bytes))",
    "network_latency": "1000 * avg by (instance) (rate(prometheus_http_request_duration_seconds_sum[1m])"
    " / clamp_min(rate(prometheus_http_request_duration_seconds_count[1m]), 1e-9))",
    "error_rate": "100 * avg by (instance) (rate(node_network_receive_errs_total[1m])"
    " / clamp_min(rate(node_network_receive_packets_total[1m]), 1e-9))",
    "request_count": "60 * sum by (instance) (rate(node_network_receive_packets_total[1m]))",
}


class PrometheusError(RuntimeError):
    """Prometheus answered with an error, or could not be reached."""


def fetch(
    base_url: str,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=1),
    queries: dict[str, str] | None = None,
    service_label: str = "instance",
    client: httpx.Client | None = None,
) -> list[dict[str, Any]]:
    """Raw sample rows for [start, end]; a timestamp missing one metric is dropped."""
    queries = {**DEFAULT_QUERIES, **(queries or {})}
    owned = client is None
    client = client or httpx.Client(timeout=30)
    try:
        series = {m: _query_range(client, base_url, queries[m], start, end, step) for m in METRICS}
    finally:
        if owned:
            client.close()
    return _join(series, service_label)


def _query_range(
    client: httpx.Client, base_url: str, query: str, start: datetime, end: datetime, step: timedelta
) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {
        "query": query,
        "start": start.timestamp(),
        "end": end.timestamp(),
        "step": f"{int(step.total_seconds())}s",
    }
    try:
        response = client.get(f"{base_url.rstrip('/')}/api/v1/query_range", params=params)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {base_url} unreachable: {exc}") from exc
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"query {query!r} failed: {body.get('error', response.text[:200])}")
    return list(body["data"]["result"])


def _join(series: dict[str, list[dict[str, Any]]], service_label: str) -> list[dict[str, Any]]:
    rows: dict[tuple[str, float], dict[str, Any]] = defaultdict(dict)
    for metric, results in series.items():
        for result in results:
            service = result["metric"].get(service_label, "unknown")
            for stamp, value in result["values"]:
                rows[(service, float(stamp))][metric] = float(value)
    return [
        {"service": service, "timestamp": datetime.fromtimestamp(stamp, UTC), **values}
        for (service, stamp), values in sorted(rows.items())
        if len(values) == len(METRICS)
    ]
