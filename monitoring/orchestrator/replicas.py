"""A service's replicas as RelayCore knows them (the registered endpoints, drained or serving),
and how far each moved since one of them turned anomalous (`replica_shifts`): a replica whose
peers moved alike is not bad on its own.

The scaling advice's current replica count is the number of a service's registered, undrained
endpoints (`serving_count`); only when none is registered does it fall back to the
SCALING_REPLICAS setting. Every process reads the same list: RelayCore's desired state is in
the store (`stored_endpoints`), and the API adds its live figures for each endpoint.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from monitoring.healing.policy import EndpointHealth
from monitoring.samples import SERVICE_ROW, Sample
from monitoring.store import control

# A replica's level before its anomaly: the hour before it began.
BASELINE = timedelta(hours=1)
NOW_ROWS = 5  # its level since: the mean of its last rows, at most this many
EPSILON = 1.0  # keeps a shift from zero (no errors at all) finite


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


Shifts = Mapping[str, float]


def replica_shifts(
    samples: Sequence[Sample], replica: str, since: datetime, metrics: Sequence[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """How far `replica` moved on each metric since `since` (the log of its level since over
    its level in the hour before), and the median of how far its peers moved over the same
    windows. A metric without rows on both sides has no shift."""
    rows: dict[str, list[Sample]] = {}
    for s in samples:
        if s.replica != SERVICE_ROW:
            rows.setdefault(s.replica, []).append(s)
    own = _shifts(rows.get(replica, []), since, metrics)
    peers = [_shifts(found, since, metrics) for name, found in rows.items() if name != replica]
    peer = {
        m: statistics.median(p[m] for p in peers if m in p)
        for m in metrics
        if any(m in p for p in peers)
    }
    return own, peer


def _shifts(rows: Sequence[Sample], since: datetime, metrics: Sequence[str]) -> dict[str, float]:
    before = [r for r in rows if since - BASELINE <= r.timestamp < since]
    after = [r for r in rows if r.timestamp >= since][-NOW_ROWS:]
    if not before or not after:
        return {}
    return {
        m: _shift([getattr(r, m) for r in before], [getattr(r, m) for r in after]) for m in metrics
    }


def _shift(before: Sequence[float], after: Sequence[float]) -> float:
    return math.log((statistics.fmean(after) + EPSILON) / (statistics.fmean(before) + EPSILON))
