"""`POST /v2/models/{name}[/versions/{v}]/infer`: one body in, the answer's bytes out.

`answer` is the whole endpoint and never raises: a bad request is a 400 (413 for too many rows)
with the protocol's `{"error": ...}`, an unknown model or version a 404, a model that is not
ready a 503. `InferPath`, a pure ASGI middleware beside the predict one, answers infer requests
without route matching or dependency solving (most of a one-row request's cost); the documented
route in api.py calls the same `answer`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from monitoring.neuroweaver.registry import ModelLoadError, NotFound, RegistryUnreachable
from serving.http.middleware import send_json
from serving.http.security import CHALLENGE, key_problem
from serving.inference import tensors
from serving.inference.adapters import (
    ModelAdapter,
    ModelRepository,
    Scored,
    UnknownModel,
    score_version,
)
from serving.neuroweaver.predict import receive_body
from serving.state import AppState

HEADER_LENGTH = "inference-header-content-length"
MODEL_ROUTE = "/v2/models/{name}/infer"
VERSION_ROUTE = "/v2/models/{name}/versions/{version}/infer"
PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    header_length: int | None = None  # set when binary tensor data follows the JSON header


def error(status: int, message: str) -> Reply:
    return Reply(status, orjson.dumps({"error": message}))


async def answer(
    state: AppState,
    models: ModelRepository,
    name: str,
    version: str | None,
    body: bytes,
    header_length: str | None,
) -> Reply:
    """The reply to one infer request, counted in the model's live figures."""
    started = time.perf_counter()
    reply, rows = await _answer(state, models, name, version, body, header_length)
    stats = models.stats.get(name)
    if stats is not None:
        stats.record(reply.status, rows, time.perf_counter() - started)
    return reply


async def _answer(
    state: AppState,
    models: ModelRepository,
    name: str,
    version: str | None,
    body: bytes,
    header_length: str | None,
) -> tuple[Reply, int]:
    rows = np.empty((0, 0))
    try:
        adapter = models.get(name)
        request = tensors.decode_request(
            body, tensors.parse_header_length(header_length, len(body))
        )
        rows = tensors.input_matrix(request, adapter.input, state.settings.max_batch_rows)
        tensors.check_outputs(request, adapter.output)
        problem = adapter.check(rows)
        if problem:
            return error(400, f"input {adapter.input.name!r}: {problem}"), len(rows)
        scored = await _score(models, adapter, version, rows)
    except tensors.TensorError as exc:
        return error(exc.status, str(exc)), len(rows)
    except (UnknownModel, NotFound) as exc:
        return error(404, str(exc)), len(rows)
    except _NotReady as exc:
        return error(503, str(exc)), len(rows)
    payload, length = tensors.encode_response(
        request, adapter.output, adapter.name, scored.version, scored.outputs
    )
    return Reply(200, payload, length), len(rows)


class _NotReady(RuntimeError):
    pass


async def _score(
    models: ModelRepository, adapter: ModelAdapter, version: str | None, rows: np.ndarray
) -> Scored:
    if version is None or version == adapter.current():
        if adapter.current() is None:
            raise _NotReady(f"model {adapter.name!r} is not ready: {adapter.problem()}")
        try:
            return await adapter.score_current(rows)
        except LookupError as exc:  # the model went away between the check and the batch
            raise _NotReady(f"model {adapter.name!r} is not ready: {exc}") from None
    if not version.isdigit():
        raise NotFound(f"model {adapter.name!r} has no version {version!r}")
    try:
        predict = await models.version(adapter, version)
    except (ModelLoadError, RegistryUnreachable) as exc:
        raise _NotReady(f"model {adapter.name!r} version {version} is not ready: {exc}") from None
    return await score_version(predict, rows, version)


class InferPath:
    """Pure ASGI: answers POST .../infer itself and passes everything else on."""

    def __init__(
        self, app: ASGIApp, state: AppState, models: ModelRepository, routes: list[Any]
    ) -> None:
        self.app = app
        self.state = state
        self.models = models
        # the documented routes, so that timing and metrics label the requests by them
        by_path = {getattr(route, "path", None): route for route in routes}
        self.routes = {False: by_path.get(MODEL_ROUTE), True: by_path.get(VERSION_ROUTE)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.routes[match["version"] is not None]
        headers = dict(scope["headers"])
        refusal = self._refusal(headers)
        if refusal is not None:
            await send_json(send, 401, {"error": refusal}, CHALLENGE)
            return
        try:
            body = await receive_body(receive)
        except ClientDisconnect:
            return
        raw_length = headers.get(HEADER_LENGTH.encode())
        reply = await answer(
            self.state,
            self.models,
            match["name"],
            match["version"],
            body,
            None if raw_length is None else raw_length.decode("latin-1"),
        )
        await send_reply(send, reply)

    def _refusal(self, headers: dict[bytes, bytes]) -> str | None:
        expected = self.state.settings.api_key
        if expected is None:
            return None
        key, bearer = headers.get(b"x-api-key"), headers.get(b"authorization")
        return key_problem(
            "POST",
            expected,
            None if key is None else key.decode("latin-1"),
            None if bearer is None else bearer.decode("latin-1"),
        )


def reply_headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    kind = b"application/json" if reply.header_length is None else b"application/octet-stream"
    headers = [(b"content-type", kind), (b"content-length", str(len(reply.body)).encode())]
    if reply.header_length is not None:
        headers.append((HEADER_LENGTH.encode(), str(reply.header_length).encode()))
    return headers


async def send_reply(send: Send, reply: Reply) -> None:
    await send(
        {"type": "http.response.start", "status": reply.status, "headers": reply_headers(reply)}
    )
    await send({"type": "http.response.body", "body": reply.body})
