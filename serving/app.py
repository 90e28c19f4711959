"""The FastAPI application: `create_app()` wires settings, state, middleware and routers.

To plug in another area (RelayCore, the AI orchestrator), add its `APIRouter` to `ROUTERS`
(or call `app.include_router(router)` on the app `create_app` returns). Every router gets the
API key check on mutating requests from the app-wide dependency, and reaches the shared state
with `StateDep` (`state.hub.publish(...)`, `state.register_component(name, probe)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema
from starlette.requests import ClientDisconnect

from serving.ecosystem import api as ecosystem
from serving.ecosystem import dashboard, ingest, live
from serving.ecosystem import performance as analytics
from serving.ecosystem.broker import instance_key
from serving.ecosystem.events import EventHub, set_default_hub
from serving.http import health
from serving.http.logs import RequestId, configure_logging, install_redaction
from serving.http.middleware import BodySizeLimit, RequestTimer
from serving.http.ratelimit import RateLimit
from serving.http.ratelimit import document as document_rate_limits
from serving.http.security import require_api_key
from serving.inference import api as inference
from serving.inference import catalog
from serving.inference import failure_risk as inference_failure_risk
from serving.inference import neuroweaver as inference_neuroweaver
from serving.inference.adapters import ModelRepository
from serving.inference.infer import InferPath
from serving.neuroweaver import api as neuroweaver
from serving.neuroweaver import models, predict, webhooks
from serving.neuroweaver import versions as registry
from serving.neuroweaver.batching import MicroBatcher
from serving.neuroweaver.shadow import ShadowRecorder, ShadowWriter, follow_challenger
from serving.orchestrator import alerts, incidents
from serving.orchestrator.api import router as orchestrator_router
from serving.orchestrator.holder import poll
from serving.relaycore.api import router as relaycore_router
from serving.settings import ServingSettings, get_settings
from serving.state import AppState, StoreUnavailable

log = logging.getLogger(__name__)
ROUTERS = [
    health.router,
    neuroweaver.router,
    registry.router,
    webhooks.router,
    ingest.router,
    ecosystem.router,
    analytics.router,
    dashboard.router,
    relaycore_router,
    orchestrator_router,
    alerts.router,
    incidents.router,
    inference.router,
    catalog.router,
]
FIRST_LOAD_TIMEOUT_S = 60.0


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """A new app; nothing heavy happens until its lifespan starts."""
    install_redaction()  # before the settings: a bad one's error must not leak a password
    settings = settings or get_settings()
    configure_logging(settings)
    holder = models.ModelHolder(settings.model_name, settings.model_alias)
    state = AppState(
        settings=settings,
        holder=holder,
        hub=EventHub(),
        batcher=MicroBatcher(lambda: holder.current),
    )
    app = FastAPI(
        title="AutoMatrix Unified API",
        version="2.0.0",
        lifespan=_lifespan,
        debug=settings.debug,
        dependencies=[Depends(require_api_key)],
        description="Predictions, training, registry, ingestion and the live ecosystem.",
    )
    app.state.automatrix = state
    app.state.inference = ModelRepository()
    app.state.inference.register(inference_neuroweaver.adapter(state))
    app.state.inference.register(inference_failure_risk.adapter(state.risk))
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    _add_middleware(app, state)
    _add_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_middleware(app: FastAPI, state: AppState) -> None:
    predict_route = next(
        r for r in neuroweaver.router.routes if getattr(r, "path", None) == predict.PATH
    )
    app.add_middleware(
        InferPath, state=state, models=app.state.inference, routes=inference.router.routes
    )
    app.add_middleware(predict.PredictPath, state=state, route=predict_route)  # innermost
    if state.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=state.settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=state.settings.max_body_bytes)
    app.add_middleware(
        RateLimit,
        per_minute=state.settings.rate_limit_per_minute,
        burst=state.settings.rate_limit_burst,
        trusted_proxies=state.settings.trusted_proxies,
        redis_url=state.settings.redis_url,
        redis_prefix=instance_key(state.settings.database_url),
    )
    app.add_middleware(RequestTimer, stats=state.stats, registry=state.registry)
    app.add_middleware(RequestId)  # outermost: every log line of the request carries its id


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: AppState = app.state.automatrix
    state.started_at = time.time()
    _prepare_runtime(state.settings)
    state.hub.bind(asyncio.get_running_loop())
    set_default_hub(state.hub)
    await _first_load(state)
    await _open_store(state)
    # Start-up leaves a large heap (torch, MLflow, SQLAlchemy, Prefect); freezing it keeps the
    # garbage collector's full passes, which would walk all of it, out of request latencies.
    gc.collect()
    gc.freeze()
    state.batcher.start()
    tasks = [
        asyncio.create_task(coro, name=name)
        for name, coro in (
            (
                "model-poller",
                models.poll(
                    state.holder,
                    state.settings.model_reload_interval,
                    lambda loaded: live.announce_swap(state, loaded),
                ),
            ),
            (
                "forecaster-poller",
                poll(state.forecaster, state.settings.model_reload_interval),
            ),
            ("risk-poller", poll(state.risk, state.settings.model_reload_interval)),
            ("live-ticker", live.tick(state, state.settings.live_interval)),
            ("prediction-log", state.predictions.run()),
        )
    ]
    writer = _start_shadow(state, tasks)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await state.batcher.stop()
        if writer is not None:
            writer.close()
        state.hub.close_all()
        set_default_hub(None)


def _start_shadow(state: AppState, tasks: list[asyncio.Task[Any]]) -> ShadowWriter | None:
    """With SHADOW_SHARE > 0: the recorder, its writer process, and the challenger follower."""
    settings = state.settings
    if settings.shadow_share <= 0:
        return None
    try:
        state.engine()  # migrated before the writer opens it
    except StoreUnavailable as exc:
        log.warning("shadow is off: the store cannot be opened: %s", exc)
        return None
    writer = ShadowWriter(settings.database_url, settings.model_name)
    state.shadow = ShadowRecorder(settings.shadow_share, writer.send)
    state.predictions.listeners.append(state.shadow.take)
    follower = follow_challenger(state.shadow, settings.model_name, settings.model_reload_interval)
    tasks.append(asyncio.create_task(state.shadow.run(), name="shadow-log"))
    tasks.append(asyncio.create_task(follower, name="shadow-challenger"))
    return writer


def _prepare_runtime(settings: ServingSettings) -> None:
    import mlflow
    import torch

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # One intra-op thread: requests are small, and a second thread only contends for the GIL
    # and the other core that uvicorn needs.
    torch.set_num_threads(1)


async def _first_load(state: AppState) -> None:
    """Loads the champion before serving; a missing or slow registry does not stop the start."""
    try:
        await asyncio.wait_for(asyncio.to_thread(state.holder.reload), FIRST_LOAD_TIMEOUT_S)
    except TimeoutError:
        state.holder.problem = "the registry did not answer in time; still trying"
    if state.holder.current is None:
        log.warning("starting without a model: %s", state.holder.problem)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(state.forecaster.reload), FIRST_LOAD_TIMEOUT_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(state.risk.reload), FIRST_LOAD_TIMEOUT_S)


async def _open_store(state: AppState) -> None:
    """Opens the metric store before the heap is frozen: SQLAlchemy's dialect and driver modules
    load on the first connection, and loaded later they would stay in the collector's oldest
    generation, where each full pass walks them. An unreachable store is no reason not to
    start; handlers answer 503."""
    with contextlib.suppress(StoreUnavailable, TimeoutError):
        await asyncio.wait_for(asyncio.to_thread(state.engine), FIRST_LOAD_TIMEOUT_S)


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailable, _store_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    detail = exc.detail
    body = (
        {
            "detail": detail.get("message", "error"),
            **{k: v for k, v in detail.items() if k != "message"},
        }
        if isinstance(detail, dict)
        else {"detail": detail}
    )
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    return JSONResponse(
        {"detail": f"{where}: {first['msg']}", "errors": errors[:50]}, status_code=422
    )


async def _store_unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
    return Response(status_code=499)  # nobody reads it; the client left mid-request


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the prediction schemas the raw predict handler documents."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, extra = models_json_schema(
        [(m, "validation") for m in neuroweaver.DOC_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(extra.get("$defs", {}))
    document_rate_limits(schema)
    _document_validation_errors(schema)
    app.openapi_schema = schema
    return schema


def _document_validation_errors(schema: dict[str, Any]) -> None:
    """Every 422 has the shape `_validation_error` (or an HTTPException) answers, not FastAPI's."""
    schema["components"]["schemas"]["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"type": "string", "description": "the first problem, with where it is"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}},
                },
            },
        },
    }
