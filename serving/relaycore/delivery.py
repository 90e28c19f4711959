"""The background delivery of durable messages: claim due ones, send them, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from monitoring.store import durable
from routing import (
    NoEndpointAvailable,
    NoEndpointForService,
    QueueFull,
    Router,
    RouteResult,
    RouterStopped,
    RoutingError,
)
from serving.http.logs import REQUEST_ID_HEADER
from serving.relaycore.transport import Envelope

log = logging.getLogger(__name__)
# Refusals that happen before any endpoint saw the message: not a delivery attempt.
NOT_SENT = (RouterStopped, NoEndpointAvailable, QueueFull)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    lease_s: float = 60.0
    backoff_s: float = 0.5
    backoff_max_s: float = 60.0
    concurrency: int = 64
    poll_s: float = 1.0
    retention_s: float = 72 * 3600.0  # delivered and failed messages are purged after this
    purge_interval_s: float = 3600.0


def backoff_s(attempts: int, config: DeliveryConfig, rng: random.Random) -> float:
    """Exponential in the attempts made, with jitter so that retries do not arrive together."""
    base = min(config.backoff_s * 2.0 ** max(attempts - 1, 0), config.backoff_max_s)
    return base * rng.uniform(0.8, 1.2)


class DeliveryWorker:
    """Delivers the store's due messages through the router while routing runs."""

    def __init__(
        self,
        router: Router,
        engine: Callable[[], Engine],
        config: DeliveryConfig,
        rng: random.Random | None = None,
    ) -> None:
        self.router = router
        self._engine = engine
        self.config = config
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.purged = 0
        self.problem: str | None = None
        self._next_purge = 0.0  # monotonic time of the next purge; the first round purges

    def wake(self) -> None:
        """A message was queued or routing restarted: look for work now."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Until cancelled; in-flight deliveries are cancelled with it and their leases expire."""
        try:
            while True:
                await self._purge_if_due()
                if not await self._round():
                    await self._idle()
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _purge_if_due(self) -> None:
        """Deletes finished messages older than the retention, at most once per interval."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self.config.purge_interval_s
        cutoff = durable.now_utc() - timedelta(seconds=self.config.retention_s)
        try:
            purged = await asyncio.to_thread(durable.purge, self._engine(), cutoff)
        except Exception as exc:  # the store is down: try again at the next interval
            log.warning("cannot purge delivered messages: %s: %s", type(exc).__name__, exc)
            return
        self.purged += purged
        if purged:
            log.info("purged %d delivered or failed messages older than %s", purged, cutoff)

    async def _round(self) -> bool:
        """Claims and starts what it can; False when there was nothing to do."""
        free = self.config.concurrency - len(self._running)
        if not self.router.running or free <= 0 or not self.router.endpoints():
            return False
        try:
            claimed = await asyncio.to_thread(
                durable.claim, self._engine(), free, self.config.lease_s
            )
            self.problem = None
        except Exception as exc:  # the store is down: keep the worker alive and try again later
            self.problem = f"cannot claim messages: {type(exc).__name__}: {exc}"[:300]
            log.warning(self.problem)
            return False
        for message in claimed:
            task = asyncio.create_task(self._deliver(message))
            self._running.add(task)
            task.add_done_callback(self._done)
        return len(claimed) == free  # a full batch: more may be due at once

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.config.poll_s)

    async def _deliver(self, message: durable.Claimed) -> None:
        engine = self._engine()
        now = durable.now_utc()
        if message.expires_at is not None and message.expires_at <= now:
            await asyncio.to_thread(
                durable.mark_failed,
                engine,
                message,
                "its deadline passed before it could be delivered",
            )
            return
        try:
            result = await self.router.send(
                Envelope(message.payload, delivery_headers(message)),
                priority=message.priority,
                deadline_s=self._deadline_s(message),
                service=message.service,
            )
        except asyncio.CancelledError:
            # Shutting down: hand it back now rather than after the lease (it may arrive twice).
            with contextlib.suppress(Exception):
                durable.retry_later(
                    engine, message, "the API stopped while delivering it", 0.0, counted=False
                )
            raise
        except NoEndpointForService as exc:
            # Not a passing refusal: counted, so that the message fails (with this reason)
            # after its attempts and backoff, unless an endpoint of its service is added.
            await self._failed_attempt(engine, message, exc.message)
        except NOT_SENT as exc:
            delay = exc.retry_after or backoff_s(1, self.config, self._rng)
            await asyncio.to_thread(
                durable.retry_later, engine, message, exc.message, delay, counted=False
            )
        except RoutingError as exc:
            await self._failed_attempt(engine, message, f"{type(exc).__name__}: {exc.message}")
        except Exception as exc:
            await self._failed_attempt(engine, message, f"{type(exc).__name__}: {exc}")
        else:
            await self._answered(engine, message, result)

    def _deadline_s(self, message: durable.Claimed) -> float:
        # Finish well inside the lease, or another process could take the message meanwhile.
        limit = self.config.lease_s * 0.8
        if message.expires_at is None:
            return limit
        return max(min(limit, (message.expires_at - durable.now_utc()).total_seconds()), 0.001)

    async def _answered(
        self, engine: Engine, message: durable.Claimed, result: RouteResult
    ) -> None:
        if result.status < 400:
            await asyncio.to_thread(
                durable.mark_delivered, engine, message, result.endpoint, result.status
            )
            self.delivered += 1
            return
        # A 4xx is the receiver refusing this message for good: retrying cannot help.
        reason = f"endpoint {result.endpoint!r} refused it with status {result.status}"
        await asyncio.to_thread(
            durable.mark_failed,
            engine,
            message,
            reason,
            endpoint=result.endpoint,
            status=result.status,
        )

    async def _failed_attempt(self, engine: Engine, message: durable.Claimed, reason: str) -> None:
        if message.attempts >= message.max_attempts:
            await asyncio.to_thread(
                durable.mark_failed,
                engine,
                message,
                f"gave up after {message.attempts} attempts; last: {reason}",
            )
            return
        delay = backoff_s(message.attempts, self.config, self._rng)
        await asyncio.to_thread(durable.retry_later, engine, message, reason, delay)


def delivery_headers(message: durable.Claimed) -> dict[str, str]:
    """What the receiver can key on: the message's id for deduplication, and the id of the
    request that queued it, to follow one request through both sides' logs."""
    headers = {"Idempotency-Key": message.id}
    if message.request_id:
        headers[REQUEST_ID_HEADER.lower()] = message.request_id  # the transport's own spelling
    return headers
