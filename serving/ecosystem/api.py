"""The ecosystem: component states, a live snapshot, server-sent events and the WebSocket feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from serving.ecosystem import live
from serving.ecosystem.broker import open_broker
from serving.ecosystem.events import Subscription, encode
from serving.http import metrics
from serving.state import AppState, StateDep

SEND_TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Links this process to the others of the instance: events through the broker, if there
    is one, and in multiprocess mode its gauges kept fresh for any worker's `/metrics`."""
    state: AppState = app.state.automatrix
    tasks = []
    broker = open_broker(state.hub, state.settings.database_url, state.settings.redis_url)
    if broker is not None:
        state.hub.relay = broker.offer
        state.register_component("event_broker", broker.component)
        tasks.append(asyncio.create_task(broker.run(), name="event-broker"))
    if metrics.multiprocess():
        tasks.append(asyncio.create_task(metrics.keep_fresh(state), name="worker-gauges"))
    try:
        yield
    finally:
        state.hub.relay = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        metrics.worker_exited()


router = APIRouter(tags=["ecosystem"], lifespan=lifespan)


@router.get("/ai-ecosystem/status")
async def components(state: StateDep) -> dict[str, Any]:
    """Every component's state: api, model, store, training, live feed, and those plugged in."""
    return {"components": await run_in_threadpool(live.components, state)}


@router.get("/api/v2/ecosystem/status")
async def overview(state: StateDep) -> dict[str, Any]:
    """Overview: model version, last ingestion, last training, predictions, components."""
    return await run_in_threadpool(live.overview, state)


@router.get("/api/v2/ecosystem/live", responses={200: {"content": {"text/event-stream": {}}}})
async def live_snapshot(
    request: Request,
    state: StateDep,
    stream: bool = Query(False, description="stream server-sent events"),
) -> Response:
    """One live snapshot, or with ?stream=true (or Accept: text/event-stream) an SSE stream."""
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        subscription = state.hub.subscribe()
        first = await run_in_threadpool(live.snapshot, state)
        return StreamingResponse(
            _sse(request, subscription, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    body = await run_in_threadpool(live.snapshot, state)
    return Response(encode({"type": "snapshot", "payload": body}), media_type="application/json")


async def _sse(
    request: Request, subscription: Subscription, first: dict[str, Any]
) -> AsyncIterator[bytes]:
    try:
        yield b"event: snapshot\ndata: " + encode({"type": "snapshot", "payload": first}) + b"\n\n"
        while not await request.is_disconnected():
            try:
                message = await asyncio.wait_for(subscription.get(), timeout=15)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if message is None:
                return
            kind = orjson.loads(message)["type"]
            yield f"event: {kind}\ndata: {message}\n\n".encode()
    finally:
        subscription.close()


@router.websocket("/api/v2/ws/ecosystem")
async def ecosystem_feed(websocket: WebSocket) -> None:
    """Pushes a snapshot at connect and every LIVE_INTERVAL seconds, and each event at once."""
    state: AppState = websocket.app.state.automatrix
    await websocket.accept()
    subscription = state.hub.subscribe()
    sender = asyncio.create_task(_send(websocket, subscription, state))
    try:
        while True:  # reading notices the disconnect; clients need not send anything
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        subscription.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _send(websocket: WebSocket, subscription: Subscription, state: AppState) -> None:
    """Delivers the client's queue; a client too slow to take a message in time is dropped."""
    try:
        first = await run_in_threadpool(live.snapshot, state)
        await websocket.send_text(encode({"type": "snapshot", "payload": first}).decode())
        async for message in subscription:
            await asyncio.wait_for(websocket.send_text(message), timeout=SEND_TIMEOUT_S)
    except Exception:
        pass
    subscription.close()
    with contextlib.suppress(Exception):
        await websocket.close(code=1013 if subscription.dropped else 1000)
