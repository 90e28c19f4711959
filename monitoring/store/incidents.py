"""Incidents: recording one a user reports, and reading them back (all sources, or one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.store.tables import Incident

RECORDED = "recorded"


def record_incident(
    engine: Engine, service: str, start: datetime, end: datetime, description: str | None = None
) -> Incident:
    """Stores one recorded incident and returns it with its id."""
    if end < start:
        raise ValueError("end is before start")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = Incident(
            service=service,
            kind=RECORDED,
            start=start,
            end=end,
            source=RECORDED,
            description=description,
        )
        session.add(row)
    return row


def list_incidents(
    engine: Engine,
    services: Sequence[str] | None = None,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Incident]:
    """Incidents that overlap [since, until], oldest first."""
    query = select(Incident).order_by(Incident.start, Incident.id)
    if services is not None:
        query = query.where(Incident.service.in_(services))
    if source is not None:
        query = query.where(Incident.source == source)
    if since is not None:
        query = query.where(Incident.end >= since)
    if until is not None:
        query = query.where(Incident.start <= until)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query))
