"""RelayCore's endpoints under /api/v2/relaycore, and the lifespan that runs RelayCore beside the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from flows.relaycore_policy import tune_and_register
from monitoring.neuroweaver import registry
from monitoring.store import durable
from monitoring.store.control import EndpointSpec
from routing import DuplicateEndpoint, InvalidEndpoint, RoutingError, UnknownEndpoint
from routing.tuning import NothingToReplay
from serving.http.logs import request_id_var
from serving.neuroweaver.training import freeze_prefect
from serving.relaycore.schemas import (
    RelayEndpointInfo,
    RelayEndpointRequest,
    RelayMessageAccepted,
    RelayMessageRequest,
    RelayMessageResponse,
    RelayOptimizeRequest,
    RelayPolicyRequest,
)
from serving.relaycore.service import RelayCore
from serving.settings import get_relaycore_settings
from serving.state import AppState

PREFIX = "/api/v2/relaycore"
log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Builds RelayCore from the settings after the app's own start, and stops it first."""
    state: AppState = app.state.automatrix
    relay = RelayCore(
        state.settings,
        get_relaycore_settings(),
        state.hub,
        state.engine,
        lambda: state.holder.current,
    )
    app.state.relaycore = relay
    state.register_component("relaycore", relay.component)
    relay.start_background()
    try:
        yield
    finally:
        await relay.close()


router = APIRouter(prefix=PREFIX, tags=["relaycore"], lifespan=lifespan)


async def get_relaycore(request: Request) -> RelayCore:
    relay: RelayCore | None = getattr(request.app.state, "relaycore", None)
    if relay is None:
        raise HTTPException(503, "RelayCore has not started")
    return relay


RelayDep = Annotated[RelayCore, Depends(get_relaycore)]


def routing_error(exc: RoutingError | InvalidEndpoint) -> HTTPException:
    """The router's refusal as the API's error format, with Retry-After when it says when."""
    status = getattr(exc, "http_status", 422)
    message = getattr(exc, "message", str(exc))
    retry_after = getattr(exc, "retry_after", None)
    if status == 429 and retry_after is None:
        retry_after = 1.0
    headers = None if retry_after is None else {"Retry-After": str(max(math.ceil(retry_after), 1))}
    return HTTPException(
        status, {"message": message, "reason": type(exc).__name__}, headers=headers
    )


@router.post("/start")
async def start(relay: RelayDep) -> dict[str, Any]:
    """Resume routing and the delivery of queued async messages, in every API process."""
    await relay.set_running(True)
    return {"running": True}


@router.post("/stop")
async def stop(relay: RelayDep) -> dict[str, Any]:
    """Refuse new messages (503) in every API process; queued ones wait, in-flight ones complete."""
    await relay.set_running(False)
    return {"running": False}


@router.post(
    "/message",
    response_model=RelayMessageResponse,
    status_code=200,
    responses={202: {"model": RelayMessageAccepted}, 429: {}, 502: {}, 503: {}, 504: {}},
)
async def message(body: RelayMessageRequest, relay: RelayDep) -> Any:
    """Forward a message now, or with "async": true store it and answer 202 with its id."""
    if not relay.router.running:
        raise HTTPException(
            503,
            {
                "message": "routing is stopped; POST /api/v2/relaycore/start resumes it",
                "reason": "RouterStopped",
            },
        )
    deadline_s = None if body.deadline_ms is None else body.deadline_ms / 1000.0
    if body.async_:
        return await _enqueue(relay, body, deadline_s)
    try:
        result = await relay.router.send(
            body.payload, priority=body.priority, deadline_s=deadline_s, service=body.service
        )
    except RoutingError as exc:
        raise routing_error(exc) from None
    return RelayMessageResponse(
        endpoint=result.endpoint,
        status=result.status,
        body=result.body,
        latency_ms=result.latency_ms,
        attempts=result.attempts,
    )


async def _enqueue(
    relay: RelayCore, body: RelayMessageRequest, deadline_s: float | None
) -> JSONResponse:
    message_id = await asyncio.to_thread(
        durable.enqueue,
        relay.engine(),
        body.payload,
        priority=body.priority,
        max_attempts=relay.settings.delivery_attempts,
        service=body.service,
        deadline_s=deadline_s,
        request_id=request_id_var.get(),
    )
    relay.delivery.wake()
    log.info("async message %s queued", message_id)  # ties the message to this request's id
    accepted = RelayMessageAccepted(
        id=message_id, state=durable.QUEUED, status_url=f"{PREFIX}/messages/{message_id}"
    )
    return JSONResponse(
        accepted.model_dump(), status_code=202, headers={"Location": accepted.status_url}
    )


@router.get("/messages/{message_id}")
async def message_state(message_id: str, relay: RelayDep) -> dict[str, Any]:
    """An async message's state: queued, in_flight, delivered or failed, attempts, last error."""
    found = await asyncio.to_thread(durable.get, relay.engine(), message_id)
    if found is None:
        raise HTTPException(404, f"no message with id {message_id!r}")
    return durable.describe(found)


@router.get("/status")
async def status(relay: RelayDep) -> dict[str, Any]:
    """Per-endpoint health, breaker, latency percentiles and score; queue depth; counters."""
    found = relay.status()
    try:
        found["messages"] = await asyncio.to_thread(durable.counts, relay.engine())
    except Exception as exc:  # the store being down must not hide the routing status
        found["messages"] = {"problem": f"{type(exc).__name__}: {exc}"[:300]}
    found["last_optimization"] = relay.last_optimization
    return found


@router.get("/endpoints", response_model=list[RelayEndpointInfo])
async def list_endpoints(relay: RelayDep) -> list[RelayEndpointInfo]:
    """The registered endpoints, the only ones that ever receive traffic; drained ones get none."""
    return [_info(e) for e in relay.desired_endpoints()]


@router.post("/endpoints", response_model=RelayEndpointInfo, status_code=201)
async def add_endpoint(body: RelayEndpointRequest, relay: RelayDep) -> RelayEndpointInfo:
    """Register an endpoint; only http(s) URLs are accepted (422), names are unique (409)."""
    try:
        endpoint = await relay.add_endpoint(body.name, body.url, body.service, body.max_concurrency)
    except (InvalidEndpoint, DuplicateEndpoint) as exc:
        raise routing_error(exc) from None
    return _info(endpoint)


@router.delete("/endpoints/{name}", response_model=RelayEndpointInfo)
async def remove_endpoint(name: str, relay: RelayDep) -> RelayEndpointInfo:
    """Stop routing to an endpoint; its calls in flight finish."""
    return await _remove(relay, name)


@router.delete("/endpoints", response_model=RelayEndpointInfo)
async def remove_endpoint_by_query(
    relay: RelayDep, name: Annotated[str, Query(min_length=1)]
) -> RelayEndpointInfo:
    """The same, with ?name=."""
    return await _remove(relay, name)


async def _remove(relay: RelayCore, name: str) -> RelayEndpointInfo:
    try:
        return _info(await relay.remove_endpoint(name))
    except UnknownEndpoint as exc:
        raise routing_error(exc) from None


@router.post("/endpoints/{name}/drain", response_model=RelayEndpointInfo)
async def drain_endpoint(name: str, relay: RelayDep) -> RelayEndpointInfo:
    """Send an endpoint nothing new, keeping it registered; its calls in flight finish."""
    return await _drained(relay, name, True)


@router.post("/endpoints/{name}/undrain", response_model=RelayEndpointInfo)
async def undrain_endpoint(name: str, relay: RelayDep) -> RelayEndpointInfo:
    """Route to a drained endpoint again."""
    return await _drained(relay, name, False)


async def _drained(relay: RelayCore, name: str, drained: bool) -> RelayEndpointInfo:
    try:
        return _info(await relay.set_drained(name, drained))
    except UnknownEndpoint as exc:
        raise routing_error(exc) from None


def _info(endpoint: EndpointSpec) -> RelayEndpointInfo:
    return RelayEndpointInfo(
        name=endpoint.name,
        url=endpoint.url,
        service=endpoint.service,
        max_concurrency=endpoint.max_concurrency,
        drained=endpoint.drained,
    )


@router.put("/policy")
async def set_policy(body: RelayPolicyRequest, relay: RelayDep) -> dict[str, Any]:
    """Switch the policy in every API process; each starts from what it recently observed."""
    await relay.set_policy(body.policy)
    return {"policy": relay.router.policy.name}


@router.post("/optimize")
async def optimize(relay: RelayDep, body: RelayOptimizeRequest | None = None) -> dict[str, Any]:
    """Tune the adaptive policy on 70% of the recent calls, judge it on the rest, register it as
    relaycore-policy, and route with it only if it beat the defaults and the champion."""
    body = body or RelayOptimizeRequest()
    if relay.optimizing.locked():
        raise HTTPException(409, "an optimization is already running")
    async with relay.optimizing:
        freeze_prefect()  # the registration loads Prefect's modules; out of the collector's way
        try:
            found = await asyncio.to_thread(
                tune_and_register,
                relay.router.observations(),
                relay.adaptive_params,
                trials=body.trials,
                timeout_s=body.timeout_s,
                storage=relay.optuna_storage,
                origin=f"POST {PREFIX}/optimize, process {os.getpid()}",
            )
        except NothingToReplay as exc:
            raise HTTPException(409, f"nothing to replay: {exc}") from None
        except registry.RegistryUnreachable as exc:
            raise HTTPException(503, str(exc)) from None
    best = found.pop("best_params")
    report = {k: found[k] for k in ("before", "after", "applied", "mlflow_run_id", "version")}
    await relay.set_tuning(best if found["promoted"] else None, report)
    if found["promoted"]:  # this process routes with it already; the poll need not reload it
        relay.policy.current, relay.policy.version, relay.policy.problem = (
            best,
            found["version"],
            None,
        )
    found["policy"] = relay.router.policy.name
    return found


@router.get("/observations")
async def observations(relay: RelayDep) -> dict[str, Any]:
    """The calls this process's RelayCore observed (bounded), oldest first: what a policy
    training replays."""
    return {"observations": [asdict(o) for o in relay.router.observations()]}
