"""The in-process event hub: components publish, WebSocket and SSE clients subscribe.

Publishing never blocks and never fails because of a subscriber: each subscriber has a bounded
queue, and one that cannot keep up is dropped (its queue is closed and its connection ends).

Other parts of the API process publish with either
    `request.app.state.automatrix.hub.publish("breaker", {...})`  (inside a handler), or
    `serving.ecosystem.events.publish("anomaly", {...})`  (anywhere in the process, from any thread).

Events of the `SHARED` types also go to the hub's `relay` (the broker in `broker.py`, when one
is set), which carries them to the other API processes of the instance; what arrives from them
comes back through `receive`. Each event names the process that published it (`origin`), so a
process never delivers its own publication twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

# Component states carry dicts keyed by numbers (queue depth per priority) and numpy values.
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def encode(document: Any) -> bytes:
    """JSON for the live feed, tolerant of non-string keys and numpy values."""
    return orjson.dumps(document, option=JSON_OPTIONS)


EVENT_TYPES = ("snapshot", "champion", "training", "anomaly", "breaker", "routing", "metrics")
# What one process alone knows: its breakers, its router, the samples pushed to it. The other
# types each process derives from the shared store or registry itself (a snapshot, a champion
# swap, a training run, a stored anomaly); relaying them would deliver each one N times.
SHARED = frozenset({"breaker", "routing", "metrics"})
_CLOSED = object()


def process_origin() -> str:
    """This process's name on the wire: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)
    origin: str = ""

    def to_json(self) -> str:
        document = {"type": self.type, "at": self.at, "origin": self.origin}
        return encode({**document, "payload": self.payload}).decode()


class Subscription:
    """One client's bounded queue of encoded events."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize + 1)
        self.maxsize = maxsize
        self.dropped = False
        self.closed = False

    def offer(self, message: str) -> bool:
        """Queues a message; False (and the subscription is dropped) when the client lags."""
        if self.closed:
            return False
        if self._queue.qsize() >= self.maxsize:
            self.dropped = True
            self.close()
            return False
        self._queue.put_nowait(message)
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(_CLOSED)  # the extra slot guarantees room for the sentinel
            self._hub._forget(self)

    async def get(self) -> str | None:
        """The next message, or None once the subscription is closed or dropped."""
        item = await self._queue.get()
        return None if item is _CLOSED else item  # type: ignore[return-value]

    async def __aiter__(self) -> AsyncIterator[str]:
        while (message := await self.get()) is not None:
            yield message


class EventHub:
    """Fan-out of events to subscribers; `publish` is safe from any thread."""

    def __init__(self, queue_size: int = 64, history: int = 50) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recent: dict[str, list[dict[str, Any]]] = {}
        self._history = history
        self.published = 0
        self.dropped_clients = 0
        self.origin = process_origin()
        # Set by the broker: takes each encoded event of a SHARED type this process publishes.
        self.relay: Callable[[str], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, queue_size: int | None = None) -> Subscription:
        subscription = Subscription(self, queue_size or self.queue_size)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        """Sends `payload` as an event of `event_type` to every subscriber, now or soon."""
        event = Event(event_type, payload, origin=self.origin)
        loop = self._loop
        if loop is None or _on_loop(loop):
            self._deliver(event)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, event)

    def recent(self, event_type: str) -> list[dict[str, Any]]:
        """The last events of one type, newest first (e.g. anomalies for the dashboard)."""
        return list(reversed(self._recent.get(event_type, [])))

    def close_all(self) -> None:
        for subscription in list(self._subscribers):
            subscription.close()

    def receive(self, message: str | bytes) -> bool:
        """Delivers an event another process published (call on the hub's loop).

        False for this process's own publication coming back, or for a message that is not an
        event of a shared type; neither reaches a subscriber.
        """
        try:
            document = orjson.loads(message)
            event = Event(
                str(document["type"]),
                dict(document["payload"]),
                float(document["at"]),
                str(document["origin"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed event from the broker")
            return False
        if event.origin == self.origin or event.type not in SHARED:
            return False
        self._deliver(event, relay=False)
        return True

    def _deliver(self, event: Event, relay: bool = True) -> None:
        self.published += 1
        if event.type != "snapshot":
            kept = self._recent.setdefault(event.type, [])
            kept.append({"at": event.at, **event.payload})
            del kept[: -self._history]
        message = event.to_json()
        if relay and self.relay is not None and event.type in SHARED:
            self.relay(message)
        for subscription in list(self._subscribers):
            if not subscription.offer(message):
                self.dropped_clients += subscription.dropped
                log.warning("dropped a live client that could not keep up")

    def _forget(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_default_lock = threading.Lock()
_default: EventHub | None = None


def set_default_hub(hub: EventHub | None) -> None:
    """Makes `hub` the target of the module-level `publish` (the app's lifespan does this)."""
    global _default
    with _default_lock:
        _default = hub


def default_hub() -> EventHub | None:
    return _default


def publish(event_type: str, payload: dict[str, Any]) -> bool:
    """Publishes to the running app's hub; False when no app is running in this process."""
    hub = _default
    if hub is None:
        return False
    hub.publish(event_type, payload)
    return True
