"""`GET /api/v2/ai/alerts`: the alerts raised and where each one's delivery stands per sink."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from monitoring.alerts import outbox
from monitoring.alerts.model import Alert
from monitoring.store.orchestrator import utcnow
from serving.state import EngineDep

router = APIRouter(prefix="/api/v2/ai", tags=["ai-orchestrator"])


class AlertDeliveryInfo(BaseModel):
    sink: str = Field(description="alertmanager or webhook")
    state: str = Field(description="pending, delivered, or failed (retried at next_attempt_at)")
    attempts: int = Field(description="tries since the alert last changed")
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class AlertInfo(BaseModel):
    fingerprint: str = Field(description="a digest of the labels: the alert's identity")
    status: str = Field(description="firing, or resolved once endsAt has passed")
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = Field(description="when it cleared; none while it fires")
    generator_url: str | None
    deliveries: list[AlertDeliveryInfo]


class AlertList(BaseModel):
    count: int
    alerts: list[AlertInfo]


def _info(alert: Alert, deliveries: list[outbox.Delivery], now: datetime) -> AlertInfo:
    return AlertInfo(
        fingerprint=alert.fingerprint,
        status="firing" if alert.firing(now) else "resolved",
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        generator_url=alert.generator_url,
        deliveries=[AlertDeliveryInfo(**vars(d)) for d in deliveries],
    )


@router.get("/alerts", response_model=AlertList)
async def alerts(
    engine: EngineDep,
    delivery: Annotated[
        Literal["pending", "delivered", "failed"] | None,
        Query(description="only alerts with a delivery in this state"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """Alerts, newest change first, with their delivery state per sink."""
    found = await run_in_threadpool(outbox.listing, engine, limit, delivery)
    now = utcnow()
    return AlertList(count=len(found), alerts=[_info(a, d, now) for a, d in found])
