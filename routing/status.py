"""Plain snapshots of the router's state, for the status endpoint, the WebSocket and tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from routing.breaker import BreakerEvent, CircuitBreaker
from routing.endpoints import EndpointState
from routing.policies import Policy


@dataclass(slots=True)
class Counters:
    routed: int = 0  # messages answered by an endpoint (any status but a failure)
    retried: int = 0  # extra attempts made on another endpoint
    rejected: int = 0  # refused before sending: queue full, no endpoint, router stopped
    expired: int = 0  # deadline passed
    failed: int = 0  # every attempt failed


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    name: str
    url: str
    service: str | None
    in_flight: int
    max_concurrency: int
    queued: int  # reported by the endpoint itself
    p50_ms: float | None
    p99_ms: float | None
    latency_avg_ms: float | None
    # Calls answered without failing in the last minute: how much the latency figures rest on.
    # A replica the router starves has an old, thin average.
    recent_ok: int
    error_rate: float
    breaker: str
    breaker_retry_in_s: float
    score: float | None  # the active policy's cost, lower is better; None for round robin
    retry_after_s: float
    health_score: float | None
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class QueueStatus:
    depth: int
    capacity: int
    by_priority: dict[int, int]


@dataclass(frozen=True, slots=True)
class RouterStatus:
    running: bool
    policy: str
    endpoints: list[EndpointStatus]
    queue: QueueStatus
    counters: Counters
    retry_budget_remaining: float
    recent_events: list[BreakerEvent] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: enums are strings, priorities are keys."""
        return dataclasses.asdict(self)


def endpoint_status(
    state: EndpointState, breaker: CircuitBreaker, policy: Policy, now: float
) -> EndpointStatus:
    s = state.stats
    return EndpointStatus(
        name=state.name,
        url=state.endpoint.url,
        service=state.endpoint.service,
        in_flight=s.in_flight,
        max_concurrency=state.endpoint.max_concurrency,
        queued=s.queued,
        p50_ms=s.percentile_ms(50),
        p99_ms=s.percentile_ms(99),
        latency_avg_ms=None if s.latency.empty else s.latency.value() * 1000.0,
        recent_ok=s.recent.total(now),
        error_rate=s.error_rate(),
        breaker=str(breaker.state(now)),
        breaker_retry_in_s=breaker.retry_after_s(now),
        score=policy.cost(state, now),
        retry_after_s=s.retry_after_s(now),
        health_score=s.health_score,
        completed=s.completed,
        failed=s.failed,
    )
