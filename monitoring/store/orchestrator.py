"""The orchestrator's queries: detected anomalies, detector cursors and the healing audit trail.

`SqlActionRepository` is the SQL form of the healing engine's `ActionRepository` Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.healing.actions import Action, ActionKind, ActionState, Mode
from monitoring.samples import SERVICE_ROW
from monitoring.store.tables import AnomalyRow, DetectorCursor, HealingActionRow

OPEN, CLOSED = "open", "closed"
# Severity bands of an anomaly's score, lowest first.
SEVERITIES: tuple[tuple[str, float], ...] = (
    ("low", 0.0),
    ("medium", 0.9),
    ("high", 0.97),
    ("critical", 0.995),
)


def severity_of(score: float) -> str:
    return [name for name, floor in SEVERITIES if score >= floor][-1]


def severity_floor(name: str) -> float:
    """The lowest score of a severity band; raises KeyError for an unknown name."""
    return dict(SEVERITIES)[name]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_row(action: Action, row: HealingActionRow | None = None) -> HealingActionRow:
    row = row or HealingActionRow(id=action.id)
    row.kind, row.target, row.service = str(action.kind), action.target, action.service
    row.cause, row.started_by = action.reason, action.started_by
    row.mode = None if action.mode is None else str(action.mode)
    row.state, row.result, row.params = str(action.state), action.result, dict(action.params)
    row.undo, row.undo_of, row.approved_by = action.undo, action.undo_of, action.approved_by
    row.created_at = _aware(action.created_at)
    row.updated_at = _aware(action.updated_at or action.created_at)
    return row


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _to_action(row: HealingActionRow) -> Action:
    return Action(
        id=row.id,
        kind=ActionKind(row.kind),
        service=row.service,
        target=row.target,
        reason=row.cause,
        created_at=row.created_at,
        started_by=row.started_by,
        params=dict(row.params or {}),
        state=ActionState(row.state),
        result=row.result,
        undo=row.undo,
        updated_at=row.updated_at,
        approved_by=row.approved_by,
        undo_of=row.undo_of,
        mode=None if row.mode is None else Mode(row.mode),
    )


class SqlActionRepository:
    """The audit table as the healing engine's repository; each call is its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, action: Action) -> None:
        with Session(self.engine) as session, session.begin():
            if session.get(HealingActionRow, action.id) is not None:
                raise KeyError(f"action {action.id} already exists")
            session.add(_to_row(action))

    def update(self, action: Action) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(HealingActionRow, action.id)
            if row is None:
                raise KeyError(f"unknown action {action.id}")
            _to_row(action, row)

    def get(self, action_id: str) -> Action | None:
        with Session(self.engine) as session:
            row = session.get(HealingActionRow, action_id)
            return None if row is None else _to_action(row)

    def list(
        self,
        service: str | None = None,
        kind: ActionKind | None = None,
        since: datetime | None = None,
        state: ActionState | None = None,
        limit: int | None = None,
    ) -> list[Action]:
        """Matching actions, newest first."""
        query = select(HealingActionRow)
        if service is not None:
            query = query.where(HealingActionRow.service == service)
        if kind is not None:
            query = query.where(HealingActionRow.kind == str(kind))
        if since is not None:
            query = query.where(HealingActionRow.created_at >= _aware(since))
        if state is not None:
            query = query.where(HealingActionRow.state == str(state))
        query = query.order_by(HealingActionRow.created_at.desc(), HealingActionRow.id)
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as session:
            return [_to_action(row) for row in session.scalars(query)]


@dataclass(frozen=True)
class AnomalyFilter:
    service: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    min_score: float = 0.0
    state: str | None = None
    limit: int = 500


def find_anomalies(engine: Engine, where: AnomalyFilter) -> list[AnomalyRow]:
    """Anomalies overlapping [start, end), newest first."""
    query = select(AnomalyRow).where(AnomalyRow.score >= where.min_score)
    if where.service is not None:
        query = query.where(AnomalyRow.service == where.service)
    if where.start is not None:
        query = query.where(AnomalyRow.end >= where.start)
    if where.end is not None:
        query = query.where(AnomalyRow.start < where.end)
    if where.state is not None:
        query = query.where(AnomalyRow.state == where.state)
    query = query.order_by(AnomalyRow.start.desc(), AnomalyRow.id.desc()).limit(where.limit)
    with Session(engine) as session:
        rows = list(session.scalars(query))
        session.expunge_all()
    return rows


def cursors(
    session: Session, services: Sequence[str], replica: str = SERVICE_ROW
) -> dict[str, datetime]:
    """How far each service's own rows (or one replica's, by name) have been scored."""
    query = select(DetectorCursor).where(
        DetectorCursor.service.in_(services), DetectorCursor.replica == replica
    )
    return {row.service: row.scored_until for row in session.scalars(query)}


def set_cursor(
    session: Session, service: str, scored_until: datetime, replica: str = SERVICE_ROW
) -> None:
    row = session.get(DetectorCursor, (service, replica))
    if row is None:
        cursor = DetectorCursor(
            service=service, replica=replica, scored_until=scored_until, updated_at=utcnow()
        )
        session.add(cursor)
    else:
        row.scored_until, row.updated_at = scored_until, utcnow()
