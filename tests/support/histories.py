"""Simulated services' histories with their incidents, as the failure-risk training takes them."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from monitoring.assess.failure_training import History
from monitoring.samples import METRICS
from monitoring.sources.simulator import simulate

T0 = pd.Timestamp("2024-03-04", tz="UTC")


def simulated(days: int, services: tuple[str, ...] = ("checkout", "search")) -> dict[str, History]:
    window = simulate(T0.to_pydatetime(), T0.to_pydatetime() + timedelta(days=days), services)
    histories = {}
    for service in services:
        rows = [s for s in window.samples if s.service == service]
        index = pd.DatetimeIndex([s.timestamp for s in rows])
        frame = pd.DataFrame({m: [getattr(s, m) for s in rows] for m in METRICS}, index=index)
        found = [
            (pd.Timestamp(i.start), pd.Timestamp(i.end))
            for i in window.incidents
            if i.service == service
        ]
        histories[service] = History(frame, found)
    return histories
