"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): body size limit and request timing."""

from __future__ import annotations

import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.ecosystem.analytics import RequestStats


class BodyTooLarge(Exception):
    pass


async def send_json(
    send: Send, status: int, body: dict[str, Any], extra: dict[str, str] | None = None
) -> None:
    await send_raw_json(send, status, orjson.dumps(body), extra)


async def send_raw_json(
    send: Send, status: int, payload: bytes, extra: dict[str, str] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if extra:
        headers += [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in extra.items()
        ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """413 for a body over `max_bytes`, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = {"detail": f"the request body exceeds the limit of {self.max_bytes} bytes"}
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await send_json(send, 413, message)
            return
        await self._guarded(scope, receive, send, message)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, message: dict[str, Any]
    ) -> None:
        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > self.max_bytes:
                too_large = True
                raise BodyTooLarge
            return chunk

        async def guarded_send(reply: Message) -> None:
            nonlocal started
            if too_large:  # whatever the app answers, a body that was cut short gets a 413
                if not started:
                    started = True
                    await send_json(send, 413, message)
                return
            started = started or reply["type"] == "http.response.start"
            await send(reply)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestTimer:
    """Counts and times every HTTP request per route template, for /metrics and analytics."""

    def __init__(self, app: ASGIApp, stats: RequestStats, registry: CollectorRegistry) -> None:
        self.app = app
        self.stats = stats
        self.duration = Histogram(
            "automatrix_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10),
        )
        self.requests = Counter(
            "automatrix_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        self.stats.record(method, template, status, seconds)
        self.duration.labels(method, template).observe(seconds)
        self.requests.labels(method, template, str(status)).inc()
