"""Carries live events between the API processes of one instance: Redis pub/sub or PostgreSQL NOTIFY.

Each process publishes the events of `events.SHARED` types it produces to one channel and
delivers what the others publish to its own WebSocket and SSE clients (`EventHub.receive`,
which skips the process's own publications). With `REDIS_URL` set the channel is Redis pub/sub;
otherwise, on a PostgreSQL store, it is `LISTEN/NOTIFY` on the store's database. On SQLite
without Redis there is no broker and events stay in the process that made them.

Delivery across processes is at most once: an event published while the broker is
disconnected is kept in a bounded outbox and sent after reconnecting, but one that another
process's listener misses while *it* is reconnecting is gone. Local delivery never waits on
the broker and never fails because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from serving.ecosystem.events import EventHub

log = logging.getLogger(__name__)
OUTBOX = 1000  # events kept while disconnected; beyond that the oldest are dropped
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 10.0
PG_CHANNEL = "automatrix_events"
PG_MAX_BYTES = 7999  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more
REDIS_MAX_BYTES = 1_000_000


def instance_key(database_url: str) -> str:
    """The Redis key prefix of one instance: the processes that share a store share its keys."""
    return f"automatrix:{hashlib.sha256(database_url.encode()).hexdigest()[:16]}"


def channel_for(database_url: str) -> str:
    """The Redis channel of one instance's events."""
    return f"{instance_key(database_url)}:events"


class Broker:
    """The transport-independent part: outbox, size bound, reconnection with backoff, counters."""

    kind = "none"
    max_bytes = REDIS_MAX_BYTES

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self._outbox: deque[str] = deque(maxlen=OUTBOX)
        self._ready = asyncio.Event()
        self.connected = False
        self.problem: str | None = None
        self.sent = 0
        self.received = 0
        self.oversized = 0
        self.lost = 0
        self.reconnects = 0

    def offer(self, message: str) -> None:
        """Queues one encoded event for the other processes; never blocks (the hub's relay)."""
        if len(message.encode()) > self.max_bytes:
            self.oversized += 1
            log.warning(
                "an event of %d bytes is over the broker's bound; not relayed", len(message)
            )
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.lost += 1
        self._outbox.append(message)
        self._ready.set()

    async def run(self) -> None:
        """Connects, relays both ways, and reconnects with backoff whenever the link breaks."""
        backoff = BACKOFF_FIRST_S
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.problem = _first_line(exc)
                log.warning("event broker (%s) disconnected: %s", self.kind, self.problem)
            self.connected = False
            if time.monotonic() - started > BACKOFF_MAX_S:
                backoff = BACKOFF_FIRST_S  # it had been up a while: try again soon
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.reconnects += 1

    async def _session(self) -> None:
        raise NotImplementedError

    def _up(self) -> None:
        self.connected = True
        self.problem = None
        log.info("event broker (%s) connected", self.kind)

    def _arrived(self, message: str | bytes) -> None:
        if self.hub.receive(message):
            self.received += 1

    async def _pump_out(self, send: Callable[[str], Awaitable[Any]]) -> None:
        """Sends the outbox in order; a message whose send fails stays first for the next link."""
        while True:
            if not self._outbox:
                self._ready.clear()
                await self._ready.wait()
                continue
            await send(self._outbox[0])
            self._outbox.popleft()
            self.sent += 1

    def component(self) -> dict[str, Any]:
        """The ecosystem's view of the broker (under `/ai-ecosystem/status`)."""
        return {
            "status": "up" if self.connected else "down",
            "kind": self.kind,
            "origin": self.hub.origin,
            "sent": self.sent,
            "received": self.received,
            "oversized": self.oversized,
            "lost": self.lost,
            "reconnects": self.reconnects,
            "problem": self.problem,
        }


class RedisBroker(Broker):
    """Redis pub/sub on one channel per instance (`channel_for(DATABASE_URL)`)."""

    kind = "redis"

    def __init__(self, hub: EventHub, url: str, channel: str) -> None:
        super().__init__(hub)
        self.url = url
        self.channel = channel
        # Names its connections in CLIENT LIST: one instance's, e.g. to find or end them.
        self.client_name = "automatrix-events-" + channel.split(":")[1]

    async def _session(self) -> None:
        import redis.asyncio as redis

        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=3,
            socket_keepalive=True,
            health_check_interval=15,
            client_name=self.client_name,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            await client.ping()
            self._up()
            await _first_failure(
                self._pump_in(pubsub),
                self._pump_out(lambda message: client.publish(self.channel, message)),
            )
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _pump_in(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message.get("type") == "message":
                self._arrived(message["data"])


class PostgresBroker(Broker):
    """`LISTEN/NOTIFY` on the metric store's database: one listening and one sending connection."""

    kind = "postgres"
    max_bytes = PG_MAX_BYTES

    def __init__(self, hub: EventHub, conninfo: str) -> None:
        super().__init__(hub)
        self.conninfo = conninfo

    async def _session(self) -> None:
        import psycopg

        options: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 30,
            "application_name": "automatrix-events",
        }
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(self.conninfo, **options) as listener,
            await connect(self.conninfo, **options) as sender,
        ):
            await listener.execute(f"LISTEN {PG_CHANNEL}")
            self._up()

            async def notify(message: str) -> None:
                await sender.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, message))

            await _first_failure(self._pump_in(listener), self._pump_out(notify))

    async def _pump_in(self, listener: Any) -> None:
        async for notice in listener.notifies():
            self._arrived(notice.payload)
        raise ConnectionError("the PostgreSQL listening connection closed")


def open_broker(hub: EventHub, database_url: str, redis_url: str | None) -> Broker | None:
    """Redis when `redis_url` is set, else PostgreSQL for a PostgreSQL store, else none."""
    if redis_url:
        return RedisBroker(hub, redis_url, channel_for(database_url))
    if database_url.startswith(("postgresql", "postgres:")):
        return PostgresBroker(hub, libpq_url(database_url))
    return None


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as the plain URI psycopg connects with."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _first_failure(*jobs: Awaitable[None]) -> None:
    """Runs the jobs together; when one ends (they only end by failing) the others are cancelled."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        raise ConnectionError("the event broker's link ended")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
