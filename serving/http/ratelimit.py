"""Rate limiting of the expensive endpoints: a token bucket per client and endpoint, 429 + Retry-After.

Training, RelayCore's optimisation and the orchestrator's autonomous optimisation each start
seconds to minutes of work; one client sending them in a loop must not take the machine. Each
client (its address) gets `RATE_LIMIT_BURST` calls at once per endpoint, refilled at
`RATE_LIMIT_PER_MINUTE`. Behind a load balancer every client shares its address: the limit then
applies to the balancer as a whole, which still bounds the work each replica accepts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

EXPENSIVE = frozenset(
    {
        ("POST", "/api/v2/neuroweaver/train"),
        ("POST", "/api/v2/relaycore/optimize"),
        ("POST", "/api/v2/ai/autonomous-optimization"),
    }
)
MAX_CLIENTS = 10_000  # buckets kept; beyond that, the full (idle) ones are forgotten


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """`take(key)` -> 0 when a call may go now, else the seconds until it may."""

    def __init__(
        self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[Any, Bucket] = {}

    def take(self, key: Any) -> float:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = self.buckets[key] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else math.inf

    def _make_room(self, now: float) -> None:
        if len(self.buckets) < MAX_CLIENTS:
            return
        full = [
            k
            for k, b in self.buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full or list(self.buckets)[: MAX_CLIENTS // 10]:
            del self.buckets[key]


class RateLimit:
    """Pure ASGI middleware: 429 with Retry-After on an expensive endpoint over its rate."""

    def __init__(
        self,
        app: ASGIApp,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute, burst, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"].rstrip("/")) in EXPENSIVE:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.buckets.take((client, scope["path"].rstrip("/")))
            if wait > 0:
                retry_after = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
                await _too_many(send, retry_after)
                return
        await self.app(scope, receive, send)


async def _too_many(send: Send, retry_after: str) -> None:
    import orjson

    body = orjson.dumps({"detail": f"too many requests to this endpoint; retry in {retry_after} s"})
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", retry_after.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def document(schema: dict[str, Any]) -> None:
    """Adds the 429 answer to the OpenAPI operations this middleware guards."""
    for method, path in EXPENSIVE:
        operation = schema.get("paths", {}).get(path, {}).get(method.lower())
        if operation is not None:
            operation.setdefault("responses", {}).setdefault(
                "429",
                {
                    "description": "over the rate limit; Retry-After says when to try again",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                },
            )
