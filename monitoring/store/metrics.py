"""Metric samples in the store: bulk idempotent upserts keyed by (service, replica, timestamp),
and reads. A service's own rows have replica '' (SERVICE_ROW); its replicas' rows their names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitoring.samples import METRICS, SERVICE_ROW, Sample
from monitoring.store.tables import MetricSample, Service


def ensure_services(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Ids of the named services, creating the missing ones."""
    wanted = set(names)
    known = _service_ids(session, wanted)
    missing = wanted - known.keys()
    if missing:
        insert = _insert_for(session)(Service).on_conflict_do_nothing(index_elements=["name"])
        now = datetime.now(UTC)
        session.execute(insert, [{"name": name, "created_at": now} for name in sorted(missing)])
        known = _service_ids(session, wanted)
    return known


def _service_ids(session: Session, names: set[str]) -> dict[str, int]:
    rows = session.execute(select(Service.name, Service.id).where(Service.name.in_(names)))
    return {name: id_ for name, id_ in rows}


def _insert_for(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def upsert_samples(session: Session, samples: Sequence[Sample], chunk: int = 10_000) -> int:
    """Insert or overwrite samples keyed by (service, replica, timestamp); returns how many were
    written.

    The rows go to the driver's executemany as plain tuples: compiling one ORM statement per row
    would cost several times the database's own work.
    """
    if not samples:
        return 0
    ids = ensure_services(session, {sample.service for sample in samples})
    dialect = session.get_bind().dialect.name
    stamps = _sqlite_stamps(samples) if dialect == "sqlite" else [s.timestamp for s in samples]
    readings = attrgetter("service", "replica", *METRICS)
    rows = [
        (ids[r[0]], r[1], stamp, *r[2:])
        for r, stamp in zip(map(readings, samples), stamps, strict=True)
    ]
    # One statement may not touch a row twice (PostgreSQL refuses), so the last sample wins.
    rows = list({row[:3]: row for row in rows}.values())
    statement = _upsert_sql(dialect)
    connection = session.connection()
    for start in range(0, len(rows), chunk):
        connection.exec_driver_sql(statement, rows[start : start + chunk])
    return len(rows)


def _upsert_sql(dialect: str) -> str:
    marker = "?" if dialect == "sqlite" else "%s"
    columns = ("service_id", "replica", "timestamp", *METRICS)
    updates = ", ".join(f"{metric} = excluded.{metric}" for metric in METRICS)
    return (
        f"INSERT INTO metric_samples ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))}) "
        f"ON CONFLICT (service_id, replica, timestamp) DO UPDATE SET {updates}"
    )


def _sqlite_stamps(samples: Sequence[Sample]) -> list[str]:
    """UTC timestamps in the text form SQLAlchemy's SQLite DateTime reads and writes.

    A batch holds many services at the same instants, so each distinct instant is formatted once.
    """
    cache: dict[datetime, str] = {}
    out = []
    for sample in samples:
        text = cache.get(sample.timestamp)
        if text is None:
            text = cache[sample.timestamp] = sample.timestamp.astimezone(UTC).strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            )
        out.append(text)
    return out


def count_samples(
    session: Session, service: str | None = None, replica: str | None = SERVICE_ROW
) -> int:
    """How many rows: the services' own by default, one replica's, or every row (None)."""
    query = select(func.count()).select_from(MetricSample)
    if replica is not None:
        query = query.where(MetricSample.replica == replica)
    if service is not None:
        query = query.join(Service).where(Service.name == service)
    return int(session.scalar(query) or 0)


def service_names(session: Session) -> list[str]:
    return list(session.scalars(select(Service.name).order_by(Service.name)))


def latest_timestamp(session: Session) -> datetime | None:
    return session.scalar(select(func.max(MetricSample.timestamp)))


def replica_names(session: Session, service: str, since: datetime | None = None) -> list[str]:
    """The named replicas of `service` that have rows (at or after `since`, when given)."""
    query = (
        select(MetricSample.replica)
        .join(Service)
        .where(Service.name == service, MetricSample.replica != SERVICE_ROW)
    )
    if since is not None:
        query = query.where(MetricSample.timestamp >= since)
    return list(session.scalars(query.distinct().order_by(MetricSample.replica)))


def read_samples(
    session: Session,
    start: datetime | None = None,
    end: datetime | None = None,
    services: Sequence[str] | None = None,
    replica: str | None = SERVICE_ROW,
) -> list[Sample]:
    """Samples in [start, end), ordered by service, replica, then time: by default the services'
    own rows only, so a reader that knows nothing of replicas sees one series per service;
    `replica` names one replica, and None reads every row."""
    query = select(Service.name, MetricSample).join(Service)
    if replica is not None:
        query = query.where(MetricSample.replica == replica)
    if start is not None:
        query = query.where(MetricSample.timestamp >= start)
    if end is not None:
        query = query.where(MetricSample.timestamp < end)
    if services:
        query = query.where(Service.name.in_(services))
    query = query.order_by(Service.name, MetricSample.replica, MetricSample.timestamp)
    return [_sample(name, row) for name, row in session.execute(query)]


def _sample(name: str, row: MetricSample) -> Sample:
    values = {metric: getattr(row, metric) for metric in METRICS}
    return Sample(service=name, timestamp=row.timestamp, replica=row.replica, **values)
