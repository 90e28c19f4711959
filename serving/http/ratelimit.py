"""Rate limiting of the expensive endpoints: a token bucket per client and endpoint, 429 + Retry-After.

Training, RelayCore's optimisation and the orchestrator's autonomous optimisation each start
seconds to minutes of work; one client sending them in a loop must not take the machine. Each
client gets `RATE_LIMIT_BURST` calls at once per endpoint, refilled at `RATE_LIMIT_PER_MINUTE`.

The client is the peer address, unless the peer is one of `TRUSTED_PROXIES`: then it is the
nearest address in X-Forwarded-For that is not a trusted proxy. With `REDIS_URL` the buckets
live in Redis and every worker and process of the instance takes from the same ones; without
it each process keeps its own (so N workers allow up to N times the rate). If Redis cannot be
reached, a process falls back to its own buckets until it can again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)
Network = IPv4Network | IPv6Network

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


# One atomic take from a bucket kept in a Redis hash; Redis's clock, so all processes agree.
TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local kept = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(kept[1]) or burst
local updated = tonumber(kept[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""
REDIS_RETRY_S = 5.0  # after a Redis failure, this process's own buckets serve this long


class SharedTokenBuckets:
    """The same buckets as `TokenBuckets`, kept in Redis under `prefix` for the whole instance."""

    def __init__(self, url: str, prefix: str, local: TokenBuckets) -> None:
        self.url = url
        self.prefix = prefix
        self.local = local
        self._script: Any = None
        self._down_until = 0.0

    async def take(self, key: tuple[str, str]) -> float:
        if time.monotonic() < self._down_until:
            return self.local.take(key)
        try:
            wait = await self._take(f"{self.prefix}:ratelimit:{key[1]}:{key[0]}")
        except Exception as exc:
            log.warning("rate limits fall back to this process's own: Redis: %s", exc)
            self._down_until = time.monotonic() + REDIS_RETRY_S
            return self.local.take(key)
        return wait

    async def _take(self, key: str) -> float:
        if self._script is None:
            import redis.asyncio as redis

            client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
            self._script = client.register_script(TAKE)
        reply = await self._script(keys=[key], args=[self.local.rate, self.local.burst])
        return float(reply)


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    """The peer, or behind trusted proxies the nearest X-Forwarded-For hop that is not one."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
    hops = [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        if not _valid(hop):
            break  # what a client wrote before a forged or broken entry is not evidence
        client = hop
        if not _is_trusted(hop, trusted):
            break
    return client


def _valid(address: str) -> bool:
    try:
        ip_address(address)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


class RateLimit:
    """Pure ASGI middleware: 429 with Retry-After on an expensive endpoint over its rate."""

    def __init__(
        self,
        app: ASGIApp,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        trusted_proxies: Sequence[Network] = (),
        redis_url: str | None = None,
        redis_prefix: str = "automatrix",
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute, burst, clock)
        self.trusted = tuple(trusted_proxies)
        self.shared = (
            SharedTokenBuckets(redis_url, redis_prefix, self.buckets) if redis_url else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"].rstrip("/")) in EXPENSIVE:
            key = (client_address(scope, self.trusted), scope["path"].rstrip("/"))
            wait = await self.shared.take(key) if self.shared else self.buckets.take(key)
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
