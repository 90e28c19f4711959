"""Validate-then-upsert of sample batches, and the bookkeeping that lets a schedule resume."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.samples import Sample, validate, with_service_totals
from monitoring.sources.simulator import SimulatedIncident
from monitoring.store.metrics import upsert_samples
from monitoring.store.tables import Incident, IngestionRun


@dataclass(frozen=True)
class IngestReport:
    accepted: int
    rejected: int
    reasons: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)  # those with a row stored, sorted


def store_batch(engine: Engine, rows: Iterable[Mapping[str, Any] | Sample]) -> IngestReport:
    """Stores the valid rows in one transaction and reports every rejected one with its reason.

    Replica rows bring their service's combined row with them, where the batch has none, so
    everything that reads a service's own series sees the replicas' traffic."""
    checked = validate(rows)
    with Session(engine) as session, session.begin():
        upsert_samples(session, with_service_totals(checked.accepted))
    reasons = [f"row {r.index}: {r.reason}" for r in checked.rejected]
    return IngestReport(
        accepted=len(checked.accepted),
        rejected=len(checked.rejected),
        reasons=reasons,
        services=sorted({s.service for s in checked.accepted}),
    )


def store_incidents(engine: Engine, incidents: Iterable[SimulatedIncident]) -> int:
    """Records simulated ground truth once per (service, kind, start)."""
    stored = 0
    with Session(engine) as session, session.begin():
        for incident in incidents:
            exists = session.scalar(
                select(func.count())
                .select_from(Incident)
                .where(
                    Incident.service == incident.service,
                    Incident.kind == incident.kind,
                    Incident.start == incident.start,
                )
            )
            if not exists:
                session.add(
                    Incident(
                        service=incident.service,
                        kind=incident.kind,
                        start=incident.start,
                        end=incident.end,
                    )
                )
                stored += 1
    return stored


def record_run(
    engine: Engine, source: str, start: datetime, end: datetime, report: IngestReport
) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            IngestionRun(
                source=source,
                window_start=start,
                window_end=end,
                accepted=report.accepted,
                rejected=report.rejected,
                finished_at=datetime.now(UTC),
            )
        )


def last_window_end(engine: Engine, source: str) -> datetime | None:
    with Session(engine) as session:
        query = select(func.max(IngestionRun.window_end)).where(IngestionRun.source == source)
        return session.scalar(query)


def last_run(engine: Engine) -> IngestionRun | None:
    with Session(engine) as session:
        run = session.scalars(
            select(IngestionRun).order_by(IngestionRun.finished_at.desc()).limit(1)
        ).first()
        if run is not None:
            session.expunge(run)
        return run
