"""Endpoints (the replicas RelayCore forwards to) and what RelayCore observes about each."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from routing.windows import BucketCounter, DecayingAverage, OutcomeRing, PercentileRing

DEFAULT_MAX_CONCURRENCY = 32


class InvalidEndpoint(ValueError):
    """An endpoint definition that RelayCore refuses; the message says why (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A registered replica. Only http(s) URLs with a host are accepted."""

    name: str
    url: str
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    service: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise InvalidEndpoint("endpoint name must not be empty")
        if self.max_concurrency < 1:
            raise InvalidEndpoint("max_concurrency must be at least 1")
        validate_url(self.url)


def validate_url(url: str) -> None:
    """Raise InvalidEndpoint unless ``url`` is an absolute http or https URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - evaluating it is what rejects a malformed port
    except ValueError as exc:
        raise InvalidEndpoint(f"malformed URL {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidEndpoint(f"only http and https URLs are accepted, got {url!r}")
    if not parts.hostname:
        raise InvalidEndpoint(f"URL has no host: {url!r}")


@dataclass(slots=True)
class StatsConfig:
    latency_tau_s: float = 10.0
    recent_window_s: float = 60.0  # `recent` counts the calls answered well in this window
    window_size: int = 512
    error_window: int = 100


@dataclass(slots=True)
class EndpointStats:
    """Live observations of one endpoint; memory stays bounded whatever the traffic."""

    config: StatsConfig = field(default_factory=StatsConfig)
    in_flight: int = 0
    # Work the endpoint itself reports as waiting (C3-style feedback, e.g. an X-Queue-Depth
    # header); zero when the endpoint does not say.
    queued: int = 0
    retry_after_until: float = 0.0
    completed: int = 0
    failed: int = 0
    # An outside opinion of the endpoint's health in [0, 1] (e.g. NeuroWeaver's
    # performance_score for its service), with the time it was given.
    health_score: float | None = None
    health_at: float = 0.0
    # When the endpoint last answered, or went from idle to busy: while calls are in flight,
    # the oldest of them has been waiting at least since then (see ``silent_for``).
    heard_at: float = 0.0
    latency: DecayingAverage = field(init=False)
    recent: BucketCounter = field(init=False)  # the calls answered without failing, lately
    window: PercentileRing = field(init=False)
    outcomes: OutcomeRing = field(init=False)

    def __post_init__(self) -> None:
        self.latency = DecayingAverage(self.config.latency_tau_s)
        self.recent = BucketCounter(self.config.recent_window_s)
        self.window = PercentileRing(self.config.window_size)
        self.outcomes = OutcomeRing(self.config.error_window)

    def begin(self, now: float) -> None:
        if self.in_flight == 0:
            self.heard_at = now
        self.in_flight += 1

    def abandon(self, now: float) -> None:
        """A call taken back before it could answer (never sent, or its caller gave up)."""
        self.in_flight = max(self.in_flight - 1, 0)
        self.heard_at = now  # the call that was oldest may be the one taken back

    def silent_for(self, now: float) -> float:
        """How long calls have been in flight without any answer: a lower bound on the age of
        the oldest one, known before it returns (0 when nothing is in flight)."""
        return max(now - self.heard_at, 0.0) if self.in_flight else 0.0

    def finish(self, now: float, latency_s: float, failed: bool) -> None:
        self.in_flight = max(self.in_flight - 1, 0)
        self.heard_at = now
        self.completed += 1
        self.failed += failed
        self.outcomes.add(failed)
        # Failures are left out of the latency figures: a fast 503 would make them look good.
        if not failed:
            self.latency.add(latency_s, now)
            self.recent.add(now)
            self.window.add(latency_s)

    def error_rate(self) -> float:
        return self.outcomes.rate()

    def percentile_ms(self, q: float) -> float | None:
        value = self.window.percentile(q)
        return None if value is None else value * 1000.0

    def set_health(self, score: float, now: float) -> None:
        if not 0.0 <= score <= 1.0:
            raise ValueError("health score must be in [0, 1]")
        self.health_score = score
        self.health_at = now

    def health_penalty(self, now: float, ttl_s: float) -> float:
        """1 - score, fading to 0 as the hint ages: an old opinion should not pin an endpoint."""
        if self.health_score is None:
            return 0.0
        return (1.0 - self.health_score) * math.exp(-max(now - self.health_at, 0.0) / ttl_s)

    def retry_after_s(self, now: float) -> float:
        return max(self.retry_after_until - now, 0.0)


@dataclass(slots=True)
class EndpointState:
    """An endpoint with its live statistics: what policies choose among."""

    endpoint: Endpoint
    stats: EndpointStats

    @property
    def name(self) -> str:
        return self.endpoint.name

    def has_capacity(self) -> bool:
        return self.stats.in_flight < self.endpoint.max_concurrency
