"""The shadow log: the keyed rows of sampled live predict requests, for the shadow review.

The API files them off the request path (serving/neuroweaver/shadow.py); the review
(flows/shadow_review.py) scores them with @challenger once their true score is known, and
prunes what is older than SHADOW_KEEP_HOURS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.store.tables import ShadowRequestRow


@dataclass(frozen=True, slots=True)
class ShadowRequest:
    model: str
    request: str
    service: str
    timestamp: datetime
    inputs: list[float]
    champion_version: str
    champion_score: float
    recorded_at: datetime


def record_requests(engine: Engine, rows: Sequence[ShadowRequest]) -> None:
    """Stores `rows` in one transaction (one multi-row insert)."""
    if not rows:
        return
    columns = ShadowRequest.__slots__
    with Session(engine) as session, session.begin():
        values = [{c: getattr(row, c) for c in columns} for row in rows]
        session.execute(insert(ShadowRequestRow), values)


def read_requests(
    engine: Engine, model: str, champion_version: str, since: datetime, until: datetime
) -> list[ShadowRequest]:
    """The rows `champion_version` of `model` answered, recorded in [since, until), oldest first."""
    query = (
        select(ShadowRequestRow)
        .where(ShadowRequestRow.model == model)
        .where(ShadowRequestRow.champion_version == champion_version)
        .where(ShadowRequestRow.recorded_at >= since)
        .where(ShadowRequestRow.recorded_at < until)
        .order_by(ShadowRequestRow.id)
    )
    with Session(engine) as session:
        return [_request(row) for row in session.scalars(query)]


def prune_requests(engine: Engine, before: datetime) -> int:
    """Deletes the rows recorded before `before`; returns how many."""
    with Session(engine) as session, session.begin():
        result = session.execute(
            delete(ShadowRequestRow).where(ShadowRequestRow.recorded_at < before)
        )
    return int(getattr(result, "rowcount", 0) or 0)


def _request(row: ShadowRequestRow) -> ShadowRequest:
    return ShadowRequest(
        row.model,
        row.request,
        row.service,
        row.timestamp,
        list(row.inputs),
        row.champion_version,
        row.champion_score,
        row.recorded_at,
    )
