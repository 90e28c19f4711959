"""Push ingestion: samples posted by services, validated and upserted like any other source."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from monitoring.samples import METRICS, SERVICE_ROW, Sample, validate, with_service_totals
from monitoring.store.ingestion import store_batch
from serving.neuroweaver.schemas import MetricsPush, MetricsPushResult
from serving.orchestrator.arrival import react_on_arrival
from serving.state import EngineDep, HubDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v2", tags=["ingestion"])
LIVE_ROWS = 500


@router.post(
    "/metrics",
    response_model=MetricsPushResult,
    responses={
        422: {"description": "every sample was rejected (nothing stored); reasons given"},
        503: {"description": "the metric store is unreachable"},
    },
)
async def push_metrics(
    body: MetricsPush, request: Request, engine: EngineDep, hub: HubDep
) -> MetricsPushResult:
    """Stores the valid samples (idempotent by service, replica and time); 200 reports any
    rejected ones. A sample with a `replica` (its RelayCore endpoint name) is that replica's own
    reading; its service's combined row is stored beside it. Then the pushed services are scored
    on arrival, and their replicas drained or restored on their own evidence (HEALING_MODE)."""
    if not body.samples:
        raise HTTPException(422, "samples is empty")
    checked = validate(body.samples)
    reasons = [f"row {r.index}: {r.reason}" for r in checked.rejected][:100]
    if not checked.accepted:
        raise HTTPException(
            422,
            {
                "message": "every sample was rejected; nothing was stored",
                "rejected": len(checked.rejected),
                "reasons": reasons,
            },
        )
    try:
        report = await run_in_threadpool(store_batch, engine, checked.accepted)
    except Exception as exc:  # the database went away mid-request
        raise HTTPException(503, f"the metric store could not store the batch: {exc}") from None
    # The live view charts services: replica rows reach it as their service's combined row.
    services = [s for s in with_service_totals(checked.accepted) if s.replica == SERVICE_ROW]
    hub.publish("metrics", {"samples": [_live_row(s) for s in services[-LIVE_ROWS:]]})
    result = MetricsPushResult(
        accepted=report.accepted, rejected=len(checked.rejected), reasons=reasons
    )
    pushed = sorted({s.service for s in checked.accepted})
    try:
        reaction = await react_on_arrival(request.app, pushed)
    except Exception as exc:  # stored is stored: the next push or the cycle scores these rows
        log.warning("detection on arrival failed for %s: %s", ", ".join(pushed), exc)
        result.reaction_error = f"{type(exc).__name__}: {exc}"
    else:
        result.new_anomalies, result.actions = reaction["new_anomalies"], reaction["actions"]
    return result


def _live_row(sample: Sample) -> dict[str, Any]:
    return {
        "service": sample.service,
        "t": sample.timestamp.timestamp(),
        **{metric: getattr(sample, metric) for metric in METRICS},
    }
