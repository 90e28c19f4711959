"""Detection on arrival: score what is new for some services and their replicas, now.

Each series has its own cursor and its own open anomaly: a service's own (combined) rows
(replica '') and each named replica's (the RelayCore endpoint name). `detect_arrived` is a plain
function, so the ingestion flow and the push endpoint call it as rows arrive, and the
five-minute cycle calls it too; whichever comes first scores the rows, and the others find
nothing new.

It is cheap to call every minute:
- a series with no row after its cursor costs one indexed query, never a warm-up;
- the warm-up read is bounded (`DETECTOR_WARMUP_HOURS`, or `warmup`);
- a process keeps each series' warmed detector (a bounded cache), so its next call feeds only
  the new rows. The cached detector is used only when its last row is the stored cursor, so a
  run elsewhere (another process, a failed transaction) makes it replay the window instead.

Two processes scoring the same series at once: the cursor moves by compare-and-set, and the
loser stores nothing (its transaction rolls back), so no anomaly is stored twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.anomaly.services import DetectorConfig, ServiceAnomalyDetector
from monitoring.anomaly.tracking import Episode, TrackingConfig, track
from monitoring.config import OrchestratorSettings
from monitoring.samples import SERVICE_ROW
from monitoring.store.metrics import read_samples, replica_names
from monitoring.store.orchestrator import CLOSED, OPEN, cursors, severity_of, utcnow
from monitoring.store.tables import AnomalyRow, DetectorCursor, MetricSample, Service

WARM_CACHE_SIZE = 256


@dataclass
class _Warm:
    detector: ServiceAnomalyDetector
    until: datetime


_warm: OrderedDict[tuple[str, str, str], _Warm] = OrderedDict()
_warm_lock = threading.Lock()


class _Raced(Exception):
    """Another run moved this series' cursor first: this run's work is dropped."""


def tracking_config(settings: OrchestratorSettings) -> TrackingConfig:
    return TrackingConfig(
        open_score=settings.anomaly_open_score,
        quiet=timedelta(minutes=settings.anomaly_quiet_minutes),
        detector=DetectorConfig(min_history=settings.detector_min_history),
    )


def describe_anomaly(row: AnomalyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "service": row.service,
        "replica": row.replica or None,
        "metrics": list(row.metrics),
        "start": row.start.isoformat(),
        "end": row.end.isoformat(),
        "score": round(row.score, 4),
        "severity": row.severity,
        "state": row.state,
    }


def detect_arrived(
    engine: Engine,
    services: Sequence[str],
    now: datetime,
    settings: OrchestratorSettings,
    warmup: timedelta | None = None,
) -> list[dict[str, Any]]:
    """Scores the rows that arrived, up to `now`, for `services` and each of their named
    replicas; stores what opened, grew or closed, and returns the anomalies that opened."""
    found: list[dict[str, Any]] = []
    for service in services:
        for replica in series_of(engine, service, now, settings):
            found += detect_series(engine, service, replica, now, settings, warmup)
    return found


def series_of(
    engine: Engine, service: str, now: datetime, settings: OrchestratorSettings
) -> list[str]:
    """The service's own series, then each replica with rows in the first-run lookback."""
    since = now - timedelta(hours=settings.detector_first_lookback_hours)
    with Session(engine) as session:
        return [SERVICE_ROW, *replica_names(session, service, since=since)]


def detect_series(
    engine: Engine,
    service: str,
    replica: str,
    now: datetime,
    settings: OrchestratorSettings,
    warmup: timedelta | None = None,
) -> list[dict[str, Any]]:
    """One series: scores its rows after its cursor; returns the anomalies that opened."""
    warmup = warmup or timedelta(hours=settings.detector_warmup_hours)
    key = (str(engine.url), service, replica)
    try:
        with Session(engine) as session, session.begin():
            return _detect(session, key, now, settings, warmup)
    except _Raced:
        return []


def _detect(
    session: Session,
    key: tuple[str, str, str],
    now: datetime,
    settings: OrchestratorSettings,
    warmup: timedelta,
) -> list[dict[str, Any]]:
    _, service, replica = key
    cursor = cursors(session, [service], replica).get(service)
    scored_from = cursor or now - timedelta(hours=settings.detector_first_lookback_hours)
    if not _has_rows_after(session, service, replica, scored_from, now):
        return []
    warm = _take_warm(key, cursor)
    start = scored_from if warm is not None else scored_from - warmup
    samples = read_samples(session, start=start, end=now, services=[service], replica=replica)
    if warm is not None:
        samples = [s for s in samples if s.timestamp > scored_from]
    open_row = open_row_of(session, service, replica)
    episode = None if open_row is None else _episode(open_row)
    detector = None if warm is None else warm.detector
    result = track(samples, scored_from, episode, tracking_config(settings), detector)
    if result.scored_until is None or result.scored_until == cursor:
        return []
    if not _advance(session, service, replica, cursor, result.scored_until):
        raise _Raced(key)
    stored = [_store(session, service, replica, e, open_row) for e in result.episodes]
    session.flush()
    if result.detector is not None:
        _keep_warm(key, _Warm(result.detector, result.scored_until))
    return [
        describe_anomaly(r) for r, e in zip(stored, result.episodes, strict=True) if e.id is None
    ]


def _has_rows_after(
    session: Session, service: str, replica: str, after: datetime, until: datetime
) -> bool:
    query = (
        select(func.max(MetricSample.timestamp))
        .join(Service)
        .where(
            Service.name == service,
            MetricSample.replica == replica,
            MetricSample.timestamp > after,
            MetricSample.timestamp < until,
        )
    )
    return session.scalar(query) is not None


def _advance(
    session: Session, service: str, replica: str, old: datetime | None, new: datetime
) -> bool:
    """Moves the cursor from `old` to `new`; False when another run moved it meanwhile."""
    if old is None:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        statement = insert(DetectorCursor).values(
            service=service, replica=replica, scored_until=new, updated_at=utcnow()
        )
        done = session.execute(statement.on_conflict_do_nothing())
    else:
        done = session.execute(
            update(DetectorCursor)
            .where(
                DetectorCursor.service == service,
                DetectorCursor.replica == replica,
                DetectorCursor.scored_until == old,
            )
            .values(scored_until=new, updated_at=utcnow())
        )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def _take_warm(key: tuple[str, str, str], cursor: datetime | None) -> _Warm | None:
    """The kept detector of this series if it stopped exactly at the cursor; taken, so two
    threads never feed one detector."""
    with _warm_lock:
        warm = _warm.pop(key, None)
    return warm if warm is not None and cursor is not None and warm.until == cursor else None


def _keep_warm(key: tuple[str, str, str], warm: _Warm) -> None:
    with _warm_lock:
        _warm[key] = warm
        while len(_warm) > WARM_CACHE_SIZE:
            _warm.popitem(last=False)


def forget_warm() -> None:
    """Drops every kept detector (tests; a process that wants to replay from the store)."""
    with _warm_lock:
        _warm.clear()


def open_row_of(session: Session, service: str, replica: str = SERVICE_ROW) -> AnomalyRow | None:
    query = select(AnomalyRow).where(
        AnomalyRow.service == service, AnomalyRow.replica == replica, AnomalyRow.state == OPEN
    )
    return session.scalars(query.order_by(AnomalyRow.start.desc())).first()


def _episode(row: AnomalyRow) -> Episode:
    return Episode(row.start, row.end, row.score, list(row.metrics), id=row.id)


def _store(
    session: Session, service: str, replica: str, episode: Episode, open_row: AnomalyRow | None
) -> AnomalyRow:
    now = utcnow()
    row = open_row if episode.id is not None and open_row is not None else None
    if row is None:
        row = AnomalyRow(service=service, replica=replica, created_at=now)
        session.add(row)
    row.metrics, row.start, row.end = list(episode.metrics), episode.start, episode.end
    row.score, row.severity = episode.score, severity_of(episode.score)
    row.state, row.updated_at = (CLOSED if episode.closed else OPEN), now
    return row
