"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.ecosystem import live
from serving.http.metrics import exposition
from serving.neuroweaver.schemas import Health, Readiness
from serving.state import StateDep

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(state: StateDep) -> Health:
    """Liveness: the process answers."""
    return Health(status="ok", uptime_s=round(time.time() - state.started_at, 3))


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: a model is loaded and the metric store answers; otherwise 503 with the reasons."""
    reasons = []
    if state.holder.current is None:
        reasons.append(f"no model: {state.holder.problem}")
    store = await run_in_threadpool(live.store_status, state)
    if store["status"] != "up":
        reasons.append(store["problem"])
    body = Readiness(
        ready=not reasons,
        reasons=reasons,
        model_version=state.holder.current.version if state.holder.current else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if not reasons else 503)


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics of the whole instance: requests, latencies, predictions, the version."""
    body = await run_in_threadpool(exposition, state)  # multiprocess mode reads files
    return Response(body, media_type=CONTENT_TYPE_LATEST)
