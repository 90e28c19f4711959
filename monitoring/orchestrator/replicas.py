"""A service's replicas as RelayCore knows them: the registered endpoints, drained or serving.

The scaling advice's current replica count is the number of a service's registered, undrained
endpoints (`serving_count`); only when none is registered does it fall back to the
SCALING_REPLICAS setting. Every process reads the same list: RelayCore's desired state is in
the store (`stored_endpoints`), and the API adds its live figures for each endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from monitoring.healing.policy import EndpointHealth
from monitoring.store import control


def stored_endpoints(engine: Engine) -> Callable[[str], list[EndpointHealth]]:
    """A service's endpoints from RelayCore's desired state in the store: names, URLs and
    drains, without RelayCore's live figures (those live in the API process)."""

    def endpoints(service: str) -> list[EndpointHealth]:
        specs = control.desired(engine).endpoints
        return [
            EndpointHealth(e.name, 0.0, e.drained, url=e.url) for e in specs if e.service == service
        ]

    return endpoints


def serving_count(endpoints: Sequence[EndpointHealth]) -> int:
    """How many of the endpoints receive traffic: registered and not drained."""
    return sum(1 for e in endpoints if not e.drained)
