"""Predict: one body in, the champion's scores out, by the shortest path the app allows.

`score` is the whole endpoint: parse, micro-batch, log for analytics off the request path, and
encode. The FastAPI route in routers/neuroweaver.py documents it and calls `score`;
`PredictPath`, a pure ASGI middleware placed just outside the router, answers the same
`POST /api/v2/neuroweaver/predict` without route matching, dependency solving or a Request
object, which is most of a one-row request's cost. It runs inside the other middlewares, so
request ids, timing, metrics, CORS and the body size limit apply as to any route, and it makes
the same API key check as the app-wide dependency.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.ecosystem.analytics import PredictionRecord
from serving.http.middleware import send_json, send_raw_json
from serving.http.security import CHALLENGE, key_problem
from serving.neuroweaver.validation import InputError, parse_prediction
from serving.state import AppState

PATH = "/api/v2/neuroweaver/predict"


async def score(state: AppState, read_body: Callable[[], Awaitable[bytes]]) -> bytes:
    """The JSON answer for a predict body; InputError (413, 422, or 503 without a model) otherwise."""
    if state.holder.current is None:
        raise InputError(f"no model is being served: {state.holder.problem}", 503)
    batcher = state.batcher
    batcher.enter()  # before the body arrives, so the batcher waits for these rows too
    try:
        parsed = parse_prediction(await read_body(), state.settings.max_batch_rows)
        answer = await batcher.predict(parsed.rows)
    finally:
        batcher.leave()
    loaded = answer.model
    state.predictions.offer(
        PredictionRecord(
            time.time(), loaded.version, len(parsed.rows), parsed.keys, answer.scores, parsed.rows
        )
    )
    scores = answer.scores.tolist()
    body: dict[str, Any] = {
        "model_name": loaded.name,
        "model_version": loaded.version,
        "model_alias": loaded.alias,
    }
    if parsed.batch:
        body["predictions"] = [{"performance_score": s} for s in scores]
        body["count"] = len(scores)
    else:
        body["performance_score"] = scores[0]
    return orjson.dumps(body)


class PredictPath:
    """Pure ASGI: answers POST on the predict path itself and passes everything else on."""

    def __init__(self, app: ASGIApp, state: AppState, route: Any) -> None:
        self.app = app
        self.state = state
        self.route = route  # the documented route, so timing and metrics label it as before

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        problem = self._refusal(scope)
        if problem is not None:
            await send_json(send, 401, {"detail": problem}, CHALLENGE)
            return
        try:
            payload = await score(self.state, lambda: receive_body(receive))
        except InputError as exc:
            await send_json(send, exc.status, {"detail": str(exc)})
            return
        except ClientDisconnect:
            await send_json(send, 499, {"detail": "the client left mid-request"})
            return
        await send_raw_json(send, 200, payload)

    def _refusal(self, scope: Scope) -> str | None:
        expected = self.state.settings.api_key
        if expected is None:
            return None
        headers = dict(scope["headers"])
        return key_problem(
            "POST", expected, _text(headers.get(b"x-api-key")), _text(headers.get(b"authorization"))
        )


async def receive_body(receive: Receive) -> bytes:
    """The whole request body from the ASGI channel; ClientDisconnect if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
