"""`POST /api/v2/ai/incidents` records an incident a person saw; `GET` lists the recorded ones.

Recorded incidents label the failure-risk training beside the simulator's ground truth and the
SLO breaches in the metrics ([orchestrator.md](../../docs/orchestrator.md#failure-risk)).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from monitoring.store import incidents as store
from monitoring.store.tables import Incident
from serving.state import EngineDep

router = APIRouter(prefix="/api/v2/ai", tags=["ai-orchestrator"])


class IncidentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(min_length=1, max_length=200)
    start: AwareDatetime = Field(description="when it began, with its time zone")
    end: AwareDatetime = Field(description="when it ended, not before start")
    description: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _ordered(self) -> IncidentRequest:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class IncidentInfo(BaseModel):
    id: int
    service: str
    start: datetime
    end: datetime
    description: str | None
    source: Literal["recorded"] = "recorded"


class IncidentList(BaseModel):
    count: int
    incidents: list[IncidentInfo]


def _info(row: Incident) -> IncidentInfo:
    return IncidentInfo(
        id=row.id, service=row.service, start=row.start, end=row.end, description=row.description
    )


@router.post("/incidents", response_model=IncidentInfo, status_code=status.HTTP_201_CREATED)
async def record(engine: EngineDep, body: IncidentRequest) -> IncidentInfo:
    """Record an incident (service, start, end, optional description): it labels training."""
    row = await run_in_threadpool(
        store.record_incident, engine, body.service, body.start, body.end, body.description
    )
    return _info(row)


@router.get("/incidents", response_model=IncidentList)
async def listing(
    engine: EngineDep,
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> IncidentList:
    """The recorded incidents, oldest first."""
    services = None if service is None else [service]
    rows = await run_in_threadpool(store.list_incidents, engine, services, store.RECORDED)
    return IncidentList(count=len(rows), incidents=[_info(r) for r in rows])
