"""The metric store: SQLAlchemy 2 models, engines, and bulk idempotent upserts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from monitoring.samples import METRICS, Sample


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes; SQLite returns naive ones, which are UTC by construction."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must carry a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Service(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: datetime.now(UTC))


class MetricSample(Base):
    __tablename__ = "metric_samples"

    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    cpu_usage: Mapped[float] = mapped_column(Float)
    memory_usage: Mapped[float] = mapped_column(Float)
    network_latency: Mapped[float] = mapped_column(Float)
    error_rate: Mapped[float] = mapped_column(Float)
    request_count: Mapped[float] = mapped_column(Float)


class Incident(Base):
    """Ground truth of an incident the simulator injected."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)


class IngestionRun(Base):
    __tablename__ = "ingestion_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(50), index=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrainingRun(Base):
    """Progress of one training, written while it runs so the API can show it."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(20))
    trial: Mapped[int] = mapped_column(Integer, default=0)
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    best_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(20), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def make_engine(url: str) -> Engine:
    """An engine for the store; SQLite gets WAL and a busy timeout so readers never block writers."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
    """Insert or overwrite samples keyed by (service, timestamp); returns how many were written.

    The rows go to the driver's executemany as plain tuples: compiling one ORM statement per row
    would cost several times the database's own work.
    """
    if not samples:
        return 0
    ids = ensure_services(session, {sample.service for sample in samples})
    dialect = session.get_bind().dialect.name
    stamps = _sqlite_stamps(samples) if dialect == "sqlite" else [s.timestamp for s in samples]
    readings = attrgetter("service", *METRICS)
    rows = [
        (ids[r[0]], stamp, *r[1:]) for r, stamp in zip(map(readings, samples), stamps, strict=True)
    ]
    # One statement may not touch a row twice (PostgreSQL refuses), so the last sample wins.
    rows = list({row[:2]: row for row in rows}.values())
    statement = _upsert_sql(dialect)
    connection = session.connection()
    for start in range(0, len(rows), chunk):
        connection.exec_driver_sql(statement, rows[start : start + chunk])
    return len(rows)


def _upsert_sql(dialect: str) -> str:
    marker = "?" if dialect == "sqlite" else "%s"
    columns = ("service_id", "timestamp", *METRICS)
    updates = ", ".join(f"{metric} = excluded.{metric}" for metric in METRICS)
    return (
        f"INSERT INTO metric_samples ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))}) "
        f"ON CONFLICT (service_id, timestamp) DO UPDATE SET {updates}"
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


def count_samples(session: Session, service: str | None = None) -> int:
    query = select(func.count()).select_from(MetricSample)
    if service is not None:
        query = query.join(Service).where(Service.name == service)
    return int(session.scalar(query) or 0)


def service_names(session: Session) -> list[str]:
    return list(session.scalars(select(Service.name).order_by(Service.name)))


def latest_timestamp(session: Session) -> datetime | None:
    return session.scalar(select(func.max(MetricSample.timestamp)))


def read_samples(
    session: Session,
    start: datetime | None = None,
    end: datetime | None = None,
    services: Sequence[str] | None = None,
) -> list[Sample]:
    """Samples in [start, end), ordered by service then time."""
    query = select(Service.name, MetricSample).join(Service)
    if start is not None:
        query = query.where(MetricSample.timestamp >= start)
    if end is not None:
        query = query.where(MetricSample.timestamp < end)
    if services:
        query = query.where(Service.name.in_(services))
    query = query.order_by(Service.name, MetricSample.timestamp)
    return [_sample(name, row) for name, row in session.execute(query)]


def _sample(name: str, row: MetricSample) -> Sample:
    values = {metric: getattr(row, metric) for metric in METRICS}
    return Sample(service=name, timestamp=row.timestamp, **values)
