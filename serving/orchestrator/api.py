"""The AI Orchestrator's endpoints under /api/v2/ai, and the task that streams new anomalies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.alerts.pipeline import registry_promoted
from monitoring.assess.forecasting import InsufficientHistory, SeriesChoice
from monitoring.assess.insights import THRESHOLDS, CapacityForecast, forecast_metric, frame_of
from monitoring.assess.model_health import model_health
from monitoring.config import get_alert_settings, get_orchestrator_settings
from monitoring.healing.actions import Action, ActionState, Mode
from monitoring.healing.engine import ActionError
from monitoring.orchestrator import cycle as orchestrator
from monitoring.orchestrator.replicas import serving_count, stored_endpoints
from monitoring.store.metrics import read_samples
from monitoring.store.orchestrator import (
    OPEN,
    AnomalyFilter,
    SqlActionRepository,
    find_anomalies,
    severity_floor,
    utcnow,
)
from monitoring.store.tables import AnomalyRow
from serving.orchestrator import views
from serving.orchestrator.arrival import watch_replicas
from serving.orchestrator.executors import api_executors, relay_endpoints
from serving.orchestrator.schemas import (
    ActionList,
    AnomalyList,
    ApprovalRequest,
    CapacityForecastResponse,
    HealingActionInfo,
    OptimizationRequest,
    OptimizationResponse,
    ServiceInsights,
)
from serving.state import AppState, EngineDep, StateDep

log = logging.getLogger(__name__)
PREFIX = "/api/v2/ai"
ANOMALY_POLL_S = 2.0
Metric = Literal["cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count"]
Severity = Literal["low", "medium", "high", "critical"]
_404: dict[int | str, dict[str, Any]] = {404: {"description": "unknown service or action"}}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Publishes every anomaly stored after start-up (by this process or the flow) on the hub,
    and watches RelayCore's replicas (HEALING_WATCH_SECONDS)."""
    state: AppState = app.state.automatrix
    state.register_component("orchestrator", lambda: _component(state))
    # Where "after start-up" begins is read before serving starts: read later by the task, an
    # anomaly stored in between would count as history and never be published.
    start = await _start_point(state)
    tasks = [
        asyncio.create_task(_stream_anomalies(state, start), name="orchestrator-anomalies"),
        asyncio.create_task(watch_replicas(app), name="orchestrator-replica-watch"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


router = APIRouter(prefix=PREFIX, tags=["ai-orchestrator"], lifespan=lifespan)


def _component(state: AppState) -> dict[str, Any]:
    with Session(state.engine()) as session:
        open_ = session.scalar(select(func.count()).where(AnomalyRow.state == OPEN))
    return {
        "status": "up",
        "healing_mode": str(get_orchestrator_settings().healing_mode),
        "open_anomalies": int(open_ or 0),
    }


async def _start_point(state: AppState) -> int | None:
    """The newest stored anomaly's id; None when the store cannot say yet (the task asks again)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_publish_new, state, None), 5.0)
    except Exception:  # the store being down or slow must not stop the start
        return None


async def _stream_anomalies(state: AppState, last: int | None) -> None:
    while True:
        with contextlib.suppress(Exception):  # the store being down must not end the stream
            last = await asyncio.to_thread(_publish_new, state, last)
        await asyncio.sleep(ANOMALY_POLL_S)


def _publish_new(state: AppState, last: int | None) -> int:
    with Session(state.engine()) as session:
        if last is None:  # start from now: what was stored before is history, not news
            return int(session.scalar(select(func.max(AnomalyRow.id))) or 0)
        rows = session.scalars(
            select(AnomalyRow).where(AnomalyRow.id > last).order_by(AnomalyRow.id)
        ).all()
    for row in rows:
        state.hub.publish("anomaly", orchestrator.describe_anomaly(row))
    return rows[-1].id if rows else last


def _require_service(engine: Engine, service: str) -> None:
    if service not in orchestrator.known_services(engine):
        raise HTTPException(404, f"unknown service {service!r}: it has no metrics in the store")


@router.get("/anomalies", response_model=AnomalyList, responses=_404)
async def anomalies(
    engine: EngineDep,
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    start: Annotated[
        datetime | None, Query(description="ISO 8601; anomalies ending after it")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="ISO 8601; anomalies starting before it")
    ] = None,
    min_severity: Annotated[Severity, Query()] = "low",
    state: Annotated[Literal["open", "closed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> AnomalyList:
    """Detected anomalies, newest first, filtered by service, time range and severity."""
    start, end = views.aware(start), views.aware(end)
    if start is not None and end is not None and start >= end:
        raise HTTPException(
            422, f"start ({start.isoformat()}) must be before end ({end.isoformat()})"
        )
    where = AnomalyFilter(service, start, end, severity_floor(min_severity), state, limit)

    def find() -> list[AnomalyRow]:
        if service is not None:
            _require_service(engine, service)
        return find_anomalies(engine, where)

    rows = await run_in_threadpool(find)
    return AnomalyList(count=len(rows), anomalies=[views.anomaly(r) for r in rows])


@router.get(
    "/predictive/capacity",
    response_model=CapacityForecastResponse,
    responses={**_404, 409: {"description": "too little history to forecast"}},
)
async def capacity(
    state: StateDep,
    engine: EngineDep,
    service: Annotated[str, Query(min_length=1, max_length=200)],
    metric: Annotated[Metric, Query()] = "cpu_usage",
    horizon: Annotated[int, Query(ge=5, le=10_080, description="minutes ahead")] = 60,
    threshold: Annotated[
        float | None, Query(allow_inf_nan=False, description="capacity limit; a default per metric")
    ] = None,
) -> CapacityForecastResponse:
    """A forecast with 80% and 95% intervals, and when it crosses the capacity threshold."""
    limit = threshold if threshold is not None else THRESHOLDS[metric]
    fitted = state.forecaster.current
    choice = fitted.choice_for(service, metric) if fitted else None
    found = await run_in_threadpool(_forecast, engine, service, metric, horizon, limit, choice)
    return views.capacity(service, found, horizon, state.forecaster.version if choice else None)


def _forecast(
    engine: Engine,
    service: str,
    metric: str,
    horizon: int,
    threshold: float | None,
    choice: SeriesChoice | None,
) -> CapacityForecast:
    _require_service(engine, service)
    days = orchestrator.ASSESS_HISTORY.days
    with Session(engine) as session:
        since = utcnow() - orchestrator.ASSESS_HISTORY
        samples = read_samples(session, start=since, services=[service])
    if not samples:
        raise HTTPException(
            409, f"too little history for {service}: no samples in the last {days} days"
        )
    try:
        return forecast_metric(
            frame_of(samples), metric, timedelta(minutes=horizon), threshold, choice
        )
    except InsufficientHistory as exc:
        raise HTTPException(409, f"too little history for {service}: {exc}") from None


@router.get("/insights/{service_name}", response_model=ServiceInsights, responses=_404)
async def insights(
    state: StateDep,
    engine: EngineDep,
    service_name: Annotated[str, Path(min_length=1, max_length=200)],
) -> ServiceInsights:
    """One service: health now and predicted score, failure risk, open anomalies, capacity
    forecast, scaling recommendation with reasons, and recent actions."""
    return await run_in_threadpool(_insights, state, engine, service_name)


def _insights(state: AppState, engine: Engine, service: str) -> ServiceInsights:
    _require_service(engine, service)
    loaded = state.holder.current
    predictor = loaded.model.predict if loaded is not None else None
    now = utcnow()
    replicas = serving_count(stored_endpoints(engine)(service))
    found = orchestrator.assess_service(
        engine,
        service,
        now,
        predictor,
        get_orchestrator_settings(),
        state.forecaster.current,
        replicas,
        state.risk.current,
    )
    open_rows = find_anomalies(engine, AnomalyFilter(service=service, state=OPEN))
    recent = SqlActionRepository(engine).list(service=service, limit=20)
    return views.insights(found, open_rows, recent, loaded.version if loaded else None)


@router.post("/autonomous-optimization", response_model=OptimizationResponse)
async def autonomous_optimization(
    request: Request,
    state: StateDep,
    engine: EngineDep,
    body: Annotated[OptimizationRequest | None, Body()] = None,
) -> OptimizationResponse:
    """Run the orchestrator's decisions now: a dry run unless `{"mode": ...}` says otherwise."""
    mode = (body or OptimizationRequest()).mode
    context = _context(request, state, engine)
    report = await run_in_threadpool(_run, context, state, mode)
    return views.optimization(report)


def _context(request: Request, state: AppState, engine: Engine) -> orchestrator.OrchestratorContext:
    relay = getattr(request.app.state, "relaycore", None)
    settings = get_orchestrator_settings()
    loaded = state.holder.current
    return orchestrator.OrchestratorContext(
        engine=engine,
        settings=settings,
        predictor=loaded.model.predict if loaded is not None else None,
        risk_model=state.risk.current,
        endpoints=relay_endpoints(relay),
        executors=api_executors(state, relay, asyncio.get_running_loop(), settings),
        # The on-demand cycle raises and delivers alerts as the scheduled flow does.
        alerting=get_alert_settings(),
        promoted_of=registry_promoted(state.settings.model_name),
    )


def _run(
    context: orchestrator.OrchestratorContext, state: AppState, mode: Mode
) -> orchestrator.CycleReport:
    loaded = state.holder.current
    if loaded is not None:
        with contextlib.suppress(Exception):  # no baseline or registry down: no rollback decision
            context.model = model_health(
                context.engine,
                loaded.model.predict,
                loaded.name,
                loaded.version,
                loaded.alias,
                utcnow(),
            )
    return orchestrator.run_cycle(context, mode=mode, started_by="api")


@router.get("/actions", response_model=ActionList)
async def actions(
    engine: EngineDep,
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    state: Annotated[ActionState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ActionList:
    """Every healing action: who started it, why, its result and how to undo it."""
    found = await run_in_threadpool(
        SqlActionRepository(engine).list, service, None, None, state, limit
    )
    return ActionList(count=len(found), actions=[views.action(a) for a in found])


@router.post(
    "/actions/{action_id}/approve",
    response_model=HealingActionInfo,
    responses={**_404, 409: {"description": "the action is not pending"}},
)
async def approve(
    request: Request,
    state: StateDep,
    engine: EngineDep,
    action_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: Annotated[ApprovalRequest | None, Body()] = None,
) -> HealingActionInfo:
    """Execute a pending action (confirm mode) now."""
    by = (body or ApprovalRequest()).by
    healing = _context(request, state, engine).healing()
    done = await run_in_threadpool(_act, lambda: healing.approve(action_id, by), engine, action_id)
    return views.action(done)


@router.post(
    "/actions/{action_id}/rollback",
    response_model=HealingActionInfo,
    responses={**_404, 409: {"description": "not succeeded, or cannot be undone"}},
)
async def rollback(
    request: Request,
    state: StateDep,
    engine: EngineDep,
    action_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: Annotated[ApprovalRequest | None, Body()] = None,
) -> HealingActionInfo:
    """Undo a succeeded action; answers with the undoing action."""
    by = (body or ApprovalRequest()).by
    healing = _context(request, state, engine).healing()
    done = await run_in_threadpool(_act, lambda: healing.undo(action_id, by), engine, action_id)
    return views.action(done)


def _act(call: Any, engine: Engine, action_id: str) -> Action:
    if SqlActionRepository(engine).get(action_id) is None:
        raise HTTPException(404, f"no action with id {action_id!r}")
    try:
        return call()  # type: ignore[no-any-return]
    except ActionError as exc:
        raise HTTPException(409, str(exc)) from None
