"""The state RelayCore routes over: registered endpoints with their breakers and statistics,
the policy, the record of recent calls and breaker events, and whether routing is running.
``routing.router.Router`` adds the sending on top.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from routing.breaker import BreakerConfig, BreakerEvent, BreakerListener, CircuitBreaker
from routing.endpoints import (
    DEFAULT_MAX_CONCURRENCY,
    Endpoint,
    EndpointState,
    EndpointStats,
    StatsConfig,
)
from routing.errors import DuplicateEndpoint, UnknownEndpoint
from routing.policies import AdaptiveParams, Policy, make_policy
from routing.record import LatencyRecord, Observation, replay
from routing.retry import RetryBudgetConfig
from routing.status import Counters


@dataclass(slots=True)
class RouterConfig:
    max_attempts: int = 3
    attempt_timeout_s: float = 10.0
    default_deadline_s: float | None = 30.0
    queue_capacity: int = 1000
    aging_s: float = 1.0
    # Share of all endpoint slots that messages below the default priority may not take, so
    # that an urgent message finds one free under overload (as Envoy keeps separate limits
    # for its high priority). Below that share, low priorities wait in the queue.
    reserve_share: float = 0.25
    record_size: int = 10_000
    event_history: int = 100
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    retry: RetryBudgetConfig = field(default_factory=RetryBudgetConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)


class RegistryOptions(TypedDict, total=False):
    """How a Registry (or a Router) is built; each is optional: policy "adaptive", the default
    config, the monotonic clock, a fresh Random and the adaptive policy's default parameters."""

    policy: str | Policy
    config: RouterConfig | None
    clock: Callable[[], float]
    rng: random.Random | None
    adaptive_params: AdaptiveParams | None


class Registry:
    """Endpoints, breakers, policy and lifecycle; everything but sending."""

    def __init__(self, **options: Unpack[RegistryOptions]) -> None:
        self.config = options.get("config") or RouterConfig()
        self._clock = options.get("clock", time.monotonic)
        self._rng = options.get("rng") or random.Random()
        self._adaptive_params = options.get("adaptive_params")
        self._states: dict[str, EndpointState] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._record = LatencyRecord(self.config.record_size)
        self._events: deque[BreakerEvent] = deque(maxlen=self.config.event_history)
        self._listeners: list[BreakerListener] = []
        self.counters = Counters()
        self.running = True
        self._policy = self._build_policy(options.get("policy", "adaptive"))

    # --- endpoints -------------------------------------------------------------------------

    def register(
        self,
        name: str,
        url: str,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        service: str | None = None,
    ) -> Endpoint:
        """Add an endpoint; raises InvalidEndpoint (bad URL) or DuplicateEndpoint."""
        return self.add_endpoint(Endpoint(name, url, max_concurrency, service))

    def add_endpoint(self, endpoint: Endpoint) -> Endpoint:
        if endpoint.name in self._states:
            raise DuplicateEndpoint(f"endpoint {endpoint.name!r} is already registered")
        self._states[endpoint.name] = EndpointState(endpoint, EndpointStats(self.config.stats))
        self._breakers[endpoint.name] = CircuitBreaker(
            endpoint.name, self.config.breaker, self._on_breaker_event
        )
        self._drain(self._clock())
        return endpoint

    def remove(self, name: str) -> Endpoint:
        """Stop routing to ``name``; calls already in flight finish normally."""
        state = self._state(name)
        del self._states[name]
        del self._breakers[name]
        self._policy.forget(name)
        self._record.forget(name)
        return state.endpoint

    def endpoint(self, name: str) -> Endpoint:
        return self._state(name).endpoint

    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self._states.values()]

    def set_health(self, name: str, score: float) -> None:
        """An outside health opinion in [0, 1], e.g. NeuroWeaver's score for its service."""
        self._state(name).stats.set_health(score, self._clock())

    def _state(self, name: str) -> EndpointState:
        try:
            return self._states[name]
        except KeyError:
            raise UnknownEndpoint(f"no endpoint named {name!r}") from None

    # --- policy, lifecycle, observation ----------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: str | Policy) -> Policy:
        """Switch policy; the new one learns from the recent record instead of starting blind."""
        self._policy = self._build_policy(policy)
        return self._policy

    def set_adaptive_params(self, params: AdaptiveParams) -> None:
        self._adaptive_params = params
        if self._policy.name == "adaptive":
            self.set_policy("adaptive")

    def _build_policy(self, policy: str | Policy) -> Policy:
        if isinstance(policy, str):
            policy = make_policy(policy, self._rng, self._adaptive_params)
        return replay(policy, self._record.observations())

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        """Refuse new messages; those already queued or in flight still complete."""
        self.running = False

    def add_listener(self, listener: BreakerListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        self._listeners.remove(listener)

    def recent_events(self) -> list[BreakerEvent]:
        return list(self._events)

    def observations(self) -> list[Observation]:
        return self._record.observations()

    def breaker(self, name: str) -> CircuitBreaker:
        self._state(name)
        return self._breakers[name]

    def _on_breaker_event(self, event: BreakerEvent) -> None:
        self._events.append(event)
        for listener in list(self._listeners):
            listener(event)

    def _drain(self, now: float) -> None:
        """Hand free slots to waiting messages: the router's business, nothing waits here."""
