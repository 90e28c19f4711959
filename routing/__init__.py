"""RelayCore's pure core: routing policies, circuit breakers, queues and retries, with the clock,
randomness and transport injected.

Imports: the standard library only (import-linter contracts in pyproject.toml); serving/relaycore
wires it to HTTP."""

from routing.breaker import BreakerConfig, BreakerEvent, BreakerState, CircuitBreaker
from routing.endpoints import Endpoint, InvalidEndpoint
from routing.errors import (
    AllAttemptsFailed,
    DeadlineExpired,
    DuplicateEndpoint,
    NoEndpointAvailable,
    NoEndpointForService,
    QueueFull,
    RouterStopped,
    RoutingError,
    UnknownEndpoint,
)
from routing.policies import POLICY_NAMES, AdaptiveParams, Policy, UnknownPolicy, make_policy
from routing.queue import PRIORITY_MAX, PRIORITY_MIN, PriorityQueue
from routing.record import Observation
from routing.retry import RetryBudget, RetryBudgetConfig
from routing.router import (
    DEFAULT_PRIORITY,
    Router,
    RouterConfig,
    RouteResult,
    Transport,
    TransportResponse,
)
from routing.status import RouterStatus

__all__ = [
    "DEFAULT_PRIORITY",
    "POLICY_NAMES",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "AdaptiveParams",
    "AllAttemptsFailed",
    "BreakerConfig",
    "BreakerEvent",
    "BreakerState",
    "CircuitBreaker",
    "DeadlineExpired",
    "DuplicateEndpoint",
    "Endpoint",
    "InvalidEndpoint",
    "NoEndpointAvailable",
    "NoEndpointForService",
    "Observation",
    "Policy",
    "PriorityQueue",
    "QueueFull",
    "RetryBudget",
    "RetryBudgetConfig",
    "RouteResult",
    "Router",
    "RouterConfig",
    "RouterStatus",
    "RouterStopped",
    "RoutingError",
    "Transport",
    "TransportResponse",
    "UnknownEndpoint",
    "UnknownPolicy",
    "make_policy",
]
