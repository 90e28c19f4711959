"""The store's record of alerts and of each one's delivery per sink: what makes an alert that
cannot be delivered retried and visible, never lost.

`record` reconciles what the rules evaluated with what is stored. A new alert, or one whose
start, end or summary changed, is queued (pending) for every sink; an unchanged firing alert is
queued again for a refreshing sink (Alertmanager) once its last delivery is `resend` old.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.alerts.model import Alert
from monitoring.alerts.rules import Evaluated
from monitoring.store.tables import AlertDeliveryRow, AlertRow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Sinks:
    """The configured sinks' names, and those that need a firing alert re-sent (its lease)."""

    names: Sequence[str]
    refreshing: Sequence[str] = ()
    resend: timedelta = timedelta(minutes=5)


def to_alert(row: AlertRow) -> Alert:
    return Alert(
        dict(row.labels),
        dict(row.annotations),
        row.starts_at,
        row.ends_at,
        row.generator_url,
        row.key,
    )


def record(engine: Engine, evaluated: Sequence[Evaluated], sinks: Sinks, now: datetime) -> int:
    """Stores what changed and queues its deliveries; returns how many alerts were queued."""
    queued = 0
    with Session(engine) as session, session.begin():
        for key, alert in evaluated:
            queued += _resolve_others(session, key, alert, sinks, now)
            if alert is not None:
                queued += _upsert(session, alert, sinks, now)
    return queued


def _resolve_others(
    session: Session, key: str, alert: Alert | None, sinks: Sinks, now: datetime
) -> int:
    """A condition that cleared, or whose labels changed, resolves what it had firing."""
    keep = None if alert is None else alert.fingerprint
    active = or_(AlertRow.ends_at.is_(None), AlertRow.ends_at > now)
    query = select(AlertRow).where(AlertRow.key == key, active)
    rows = [r for r in session.scalars(query) if r.fingerprint != keep]
    for row in rows:
        row.ends_at, row.updated_at = now, now
        _queue(session, row.fingerprint, sinks.names, now)
    return len(rows)


def _upsert(session: Session, alert: Alert, sinks: Sinks, now: datetime) -> int:
    row = session.get(AlertRow, alert.fingerprint)
    if row is None:
        if not alert.firing(now):
            return 0  # cleared before it was ever raised: nothing to tell anyone
        session.add(_new_row(alert, now))
        session.flush()
        _queue(session, alert.fingerprint, sinks.names, now)
        return 1
    if _changed(row, alert, now):
        _update(row, alert, now)
        _queue(session, row.fingerprint, sinks.names, now)
        return 1
    row.annotations, row.updated_at = dict(alert.annotations), now
    if row.ends_at is None:
        return _refresh(session, row.fingerprint, sinks, now)
    return 0


def _new_row(alert: Alert, now: datetime) -> AlertRow:
    return AlertRow(
        fingerprint=alert.fingerprint,
        key=alert.key,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        generator_url=alert.generator_url,
        created_at=now,
        updated_at=now,
    )


def _changed(row: AlertRow, alert: Alert, now: datetime) -> bool:
    was_firing = row.ends_at is None or row.ends_at > now
    if was_firing != alert.firing(now) or row.ends_at != alert.ends_at:
        return True
    restarted = row.ends_at is not None and row.starts_at != alert.starts_at
    return restarted or row.annotations.get("summary") != alert.annotations.get("summary")


def _update(row: AlertRow, alert: Alert, now: datetime) -> None:
    refired = alert.ends_at is None and row.ends_at is not None
    # A condition still firing keeps the start it was first seen at; a re-fired one starts anew.
    if refired or alert.ends_at is not None:
        row.starts_at = alert.starts_at
    row.ends_at, row.annotations = alert.ends_at, dict(alert.annotations)
    row.key, row.generator_url, row.updated_at = alert.key, alert.generator_url, now


def _delivery(session: Session, fingerprint: str, sink: str, now: datetime) -> AlertDeliveryRow:
    row = session.get(AlertDeliveryRow, (fingerprint, sink))
    if row is None:
        row = AlertDeliveryRow(fingerprint=fingerprint, sink=sink, attempts=0, updated_at=now)
        row.state = PENDING
        session.add(row)
    return row


def _queue(session: Session, fingerprint: str, sinks: Sequence[str], now: datetime) -> None:
    for sink in sinks:
        row = _delivery(session, fingerprint, sink, now)
        row.state, row.attempts, row.next_attempt_at, row.updated_at = PENDING, 0, now, now


def _refresh(session: Session, fingerprint: str, sinks: Sinks, now: datetime) -> int:
    """Queues a firing alert again for each refreshing sink whose last delivery is stale."""
    queued = 0
    for sink in sinks.refreshing:
        row = _delivery(session, fingerprint, sink, now)
        stale = row.delivered_at is None or row.delivered_at <= now - sinks.resend
        if row.state == DELIVERED and stale:
            row.state, row.attempts, row.next_attempt_at, row.updated_at = PENDING, 0, now, now
            queued = 1
        elif row.state not in (DELIVERED, FAILED):
            row.state, row.next_attempt_at = PENDING, row.next_attempt_at or now
    return queued


def due(engine: Engine, sink: str, now: datetime, limit: int = 500) -> list[Alert]:
    """Alerts waiting for `sink` (pending, or failed and due for a retry), oldest first."""
    query = (
        select(AlertRow)
        .join(AlertDeliveryRow, AlertDeliveryRow.fingerprint == AlertRow.fingerprint)
        .where(
            AlertDeliveryRow.sink == sink,
            AlertDeliveryRow.state.in_((PENDING, FAILED)),
            AlertDeliveryRow.next_attempt_at <= now,
        )
        .order_by(AlertDeliveryRow.next_attempt_at, AlertRow.fingerprint)
        .limit(limit)
    )
    with Session(engine) as session:
        return [to_alert(row) for row in session.scalars(query)]


def mark(
    engine: Engine,
    sink: str,
    fingerprints: Sequence[str],
    error: str | None,
    now: datetime,
    backoff: tuple[float, float],
) -> None:
    """Records one attempt for each alert: delivered, or failed with the retry's time."""
    initial, ceiling = backoff
    with Session(engine) as session, session.begin():
        for fp in fingerprints:
            row = _delivery(session, fp, sink, now)
            row.attempts += 1
            row.updated_at, row.last_error = now, error
            if error is None:
                row.state, row.delivered_at, row.next_attempt_at = DELIVERED, now, None
            else:
                wait = min(initial * 2 ** (row.attempts - 1), ceiling)
                row.state, row.next_attempt_at = FAILED, now + timedelta(seconds=wait)


@dataclass(frozen=True)
class Delivery:
    sink: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def listing(
    engine: Engine, limit: int = 100, state: str | None = None
) -> list[tuple[Alert, list[Delivery]]]:
    """Alerts, newest change first, each with its deliveries; `state` keeps the alerts with a
    delivery in that state (`failed`: what has not reached a sink yet)."""
    query = select(AlertRow).order_by(AlertRow.updated_at.desc(), AlertRow.fingerprint)
    if state is not None:
        having = select(AlertDeliveryRow.fingerprint).where(AlertDeliveryRow.state == state)
        query = query.where(AlertRow.fingerprint.in_(having))
    with Session(engine) as session:
        rows = session.scalars(query.limit(limit)).all()
        fps = [r.fingerprint for r in rows]
        found = session.scalars(
            select(AlertDeliveryRow).where(AlertDeliveryRow.fingerprint.in_(fps))
        ).all()
        by_alert: dict[str, list[Delivery]] = {fp: [] for fp in fps}
        for d in sorted(found, key=lambda d: d.sink):
            by_alert[d.fingerprint].append(
                Delivery(
                    d.sink, d.state, d.attempts, d.last_error, d.next_attempt_at, d.delivered_at
                )
            )
        return [(to_alert(r), by_alert[r.fingerprint]) for r in rows]
