"""Durable async messages in the SQL store: enqueue, claim with a lease, and record the outcome.

Claims are exclusive across processes: on PostgreSQL a `SELECT ... FOR UPDATE SKIP LOCKED`
picks rows no other transaction holds; on SQLite, whose writers are serialised, one conditional
`UPDATE ... RETURNING` does it. A claim carries a lease: a message left in flight by a process
that died is claimed again once the lease has run out, so delivery is at least once. Every
outcome is written only by the holder of the current claim (its token), so a late answer from
an expired claim cannot overwrite a newer one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from monitoring.store.tables import RelayMessage

QUEUED, IN_FLIGHT, DELIVERED, FAILED = "queued", "in_flight", "delivered", "failed"
STATES = (QUEUED, IN_FLIGHT, DELIVERED, FAILED)


def purge(engine: Engine, older_than: datetime) -> int:
    """Deletes delivered and failed messages last updated before `older_than`; returns how many."""
    m = RelayMessage
    with engine.begin() as connection:
        found = connection.execute(
            delete(m).where(m.state.in_((DELIVERED, FAILED)), m.updated_at < older_than)
        )
        return int(found.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message this process now holds; `token` proves it when the outcome is written."""

    id: str
    token: str
    payload: Any
    priority: int
    attempts: int
    max_attempts: int
    expires_at: datetime | None
    service: str | None = None
    request_id: str | None = None  # of the API request that queued it, sent as X-Request-ID


def now_utc() -> datetime:
    return datetime.now(UTC)


def enqueue(
    engine: Engine,
    payload: Any,
    *,
    priority: int,
    max_attempts: int,
    service: str | None = None,
    deadline_s: float | None = None,
    request_id: str | None = None,
) -> str:
    """Stores a new queued message and returns its id (also its Idempotency-Key)."""
    now = now_utc()
    message_id = uuid.uuid4().hex
    row = {
        "id": message_id,
        "state": QUEUED,
        "priority": priority,
        "service": service,
        "payload": payload,
        "attempts": 0,
        "max_attempts": max_attempts,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "expires_at": None if deadline_s is None else now + timedelta(seconds=deadline_s),
        "request_id": request_id,
    }
    with engine.begin() as connection:
        connection.execute(insert(RelayMessage), [row])
    return message_id


def get(engine: Engine, message_id: str) -> RelayMessage | None:
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as session:
        return session.get(RelayMessage, message_id)


def _claimable(now: datetime) -> ColumnElement[bool]:
    m = RelayMessage
    return or_(
        and_(m.state == QUEUED, m.next_attempt_at <= now),
        and_(m.state == IN_FLIGHT, m.lease_until <= now),
    )


def claim(engine: Engine, limit: int, lease_s: float, now: datetime | None = None) -> list[Claimed]:
    """Takes up to `limit` due messages (most urgent first) for `lease_s` seconds."""
    if limit <= 0:
        return []
    now = now or now_utc()
    token = uuid.uuid4().hex
    m = RelayMessage
    due = select(m.id).where(_claimable(now)).order_by(m.priority.desc(), m.next_attempt_at)
    due = due.limit(limit)
    with engine.begin() as connection:
        target: ColumnElement[bool]
        if connection.dialect.name == "postgresql":
            ids = list(connection.scalars(due.with_for_update(skip_locked=True)))
            if not ids:
                return []
            target = m.id.in_(ids)
        else:
            # One statement: SQLite runs it under its single writer lock, so it is atomic.
            target = and_(m.id.in_(due.scalar_subquery()), _claimable(now))
        return _take(connection, target, token, now + timedelta(seconds=lease_s), now)


def _take(
    connection: Connection,
    target: ColumnElement[bool],
    token: str,
    lease_until: datetime,
    now: datetime,
) -> list[Claimed]:
    m = RelayMessage
    statement = (
        update(m)
        .where(target)
        .values(
            state=IN_FLIGHT,
            claim_token=token,
            lease_until=lease_until,
            attempts=m.attempts + 1,
            updated_at=now,
        )
        .returning(
            m.id,
            m.payload,
            m.priority,
            m.attempts,
            m.max_attempts,
            m.expires_at,
            m.service,
            m.request_id,
        )
    )
    rows = connection.execute(statement).all()
    claimed = [
        Claimed(
            r.id,
            token,
            r.payload,
            r.priority,
            r.attempts,
            r.max_attempts,
            _aware(r.expires_at),
            r.service,
            r.request_id,
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda c: -c.priority)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _write(engine: Engine, claimed: Claimed, **values: Any) -> bool:
    """Applies `values` if this claim is still the current one; False when it was lost."""
    m = RelayMessage
    statement = (
        update(m)
        .where(m.id == claimed.id, m.claim_token == claimed.token, m.state == IN_FLIGHT)
        .values(updated_at=now_utc(), lease_until=None, **values)
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


def mark_delivered(engine: Engine, claimed: Claimed, endpoint: str, status: int) -> bool:
    return _write(
        engine,
        claimed,
        state=DELIVERED,
        endpoint=endpoint,
        response_status=status,
        delivered_at=now_utc(),
        last_error=None,
    )


def mark_failed(
    engine: Engine,
    claimed: Claimed,
    reason: str,
    *,
    endpoint: str | None = None,
    status: int | None = None,
) -> bool:
    return _write(
        engine, claimed, state=FAILED, last_error=reason, endpoint=endpoint, response_status=status
    )


def retry_later(
    engine: Engine, claimed: Claimed, reason: str, delay_s: float, *, counted: bool = True
) -> bool:
    """Back to the queue after `delay_s`; an attempt that never reached an endpoint is not counted."""
    values: dict[str, Any] = {
        "state": QUEUED,
        "last_error": reason,
        "next_attempt_at": now_utc() + timedelta(seconds=delay_s),
    }
    if not counted:
        values["attempts"] = RelayMessage.attempts - 1
    return _write(engine, claimed, **values)


def counts(engine: Engine) -> dict[str, int]:
    """How many messages are in each state."""
    from sqlalchemy import func

    m = RelayMessage
    with engine.connect() as connection:
        rows = connection.execute(select(m.state, func.count()).group_by(m.state)).all()
    found = dict.fromkeys(STATES, 0)
    found.update({state: int(n) for state, n in rows})
    return found


def describe(message: RelayMessage) -> dict[str, Any]:
    """The API's view of one message."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else _aware(value).isoformat()  # type: ignore[union-attr]

    return {
        "id": message.id,
        "state": message.state,
        "priority": message.priority,
        "service": message.service,
        "attempts": message.attempts,
        "max_attempts": message.max_attempts,
        "last_error": message.last_error,
        "endpoint": message.endpoint,
        "response_status": message.response_status,
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
        "next_attempt_at": iso(message.next_attempt_at) if message.state == QUEUED else None,
        "delivered_at": iso(message.delivered_at),
        "expires_at": iso(message.expires_at),
        "request_id": message.request_id,
    }
