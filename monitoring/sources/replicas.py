"""Per-replica readings, as Prometheus and the scrape source see them, and their service totals.

The store keys samples by service alone for now, so a source's replica readings are combined
into one sample per service and instant before they are stored (`per_service`). The replica
readings themselves stay available to whoever calls the source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from monitoring.samples import METRICS, Sample


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    service: str
    replica: str
    timestamp: datetime
    cpu_usage: float
    memory_usage: float
    network_latency: float
    error_rate: float
    request_count: float


def per_service(readings: Iterable[ReplicaSample]) -> list[Sample]:
    """One sample per (service, instant): CPU and memory are the replicas' mean, requests their
    sum, and latency and error rate are weighted by each replica's requests (a replica that
    served nothing says nothing about them); with no request at all, the plain mean."""
    groups: dict[tuple[str, datetime], list[ReplicaSample]] = defaultdict(list)
    for reading in readings:
        groups[(reading.service, reading.timestamp)].append(reading)
    return [_combine(service, stamp, group) for (service, stamp), group in sorted(groups.items())]


def _combine(service: str, stamp: datetime, group: list[ReplicaSample]) -> Sample:
    requests = [r.request_count for r in group]
    total = sum(requests)
    weights = [q / total for q in requests] if total > 0 else [1 / len(group)] * len(group)

    def mean(metric: str) -> float:
        return sum(getattr(r, metric) for r in group) / len(group)

    def weighted(metric: str) -> float:
        return sum(getattr(r, metric) * w for r, w in zip(group, weights, strict=True))

    return Sample(
        service=service,
        timestamp=stamp,
        cpu_usage=mean("cpu_usage"),
        memory_usage=mean("memory_usage"),
        network_latency=weighted("network_latency"),
        error_rate=weighted("error_rate"),
        request_count=total,
    )


def replica_sample(
    service: str, replica: str, stamp: datetime, values: dict[str, float]
) -> ReplicaSample:
    """A replica reading from the five metrics by name."""
    return ReplicaSample(service, replica, stamp, **{m: values[m] for m in METRICS})
