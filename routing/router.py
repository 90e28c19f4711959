"""The RelayCore engine: picks an endpoint, forwards through an injected transport, retries
elsewhere, queues by priority when every endpoint is busy, and keeps the statistics.

Everything runs on one asyncio loop, so state needs no locks: each step between awaits is
atomic. The clock must agree with the loop's time (``time.monotonic`` does, and so does the
simulated loop in ``routing.simulation``), because waits are scheduled on the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Unpack

from routing.breaker import BreakerState
from routing.endpoints import (
    Endpoint,
    EndpointState,
)
from routing.errors import (
    AllAttemptsFailed,
    DeadlineExpired,
    NoEndpointAvailable,
    NoEndpointForService,
    QueueFull,
    RouterStopped,
)
from routing.queue import PRIORITY_MIN, PriorityQueue, QueuedItem, check_priority
from routing.record import Observation
from routing.registry import Registry, RegistryOptions
from routing.registry import RouterConfig as RouterConfig  # re-exported: callers build both here
from routing.retry import RetryBudget
from routing.status import QueueStatus, RouterStatus, endpoint_status

DEFAULT_PRIORITY = 5
# A timer firing later than this after it was due means the loop was busy or stalled.
LOOP_LAG_S = 0.005


@dataclass(frozen=True, slots=True)
class TransportResponse:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency: float | None = None  # seconds as the transport measured it; None: router's clock


# transport(endpoint, payload, timeout_s) -> response; raising means the call failed.
Transport = Callable[[Endpoint, Any, float], Awaitable[TransportResponse]]


@dataclass(frozen=True, slots=True)
class RouteResult:
    endpoint: str
    status: int
    body: Any
    latency_ms: float
    attempts: int
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Outcome:
    response: TransportResponse | None
    error: str | None
    latency_s: float

    @property
    def failed(self) -> bool:
        r = self.response
        return r is None or r.status >= 500 or r.status == 429


@dataclass(eq=False, slots=True)
class _Waiting:
    """A queued message: its slot is handed over through ``future``."""

    future: asyncio.Future[EndpointState]
    service: str | None = None
    exclude: tuple[str, ...] = ()  # endpoints it already tried (a retry)

    @property
    def restricted(self) -> bool:
        return self.service is not None or bool(self.exclude)

    def suits(self, state: EndpointState) -> bool:
        return (self.service is None or state.endpoint.service == self.service) and (
            state.name not in self.exclude
        )


class Router(Registry):
    def __init__(self, transport: Transport, **options: Unpack[RegistryOptions]) -> None:
        super().__init__(**options)
        self._transport = transport
        self._queue: PriorityQueue[_Waiting] = PriorityQueue(
            self.config.queue_capacity, self.config.aging_s
        )
        self._restricted = 0  # waiters that only some endpoints suit (see _drain)
        self._wake_at: float | None = None  # a drain scheduled by _look_again
        self._wake_handle: asyncio.TimerHandle | None = None
        self._wake_due = 0.0  # the loop's time at which that drain is due
        self._budget = RetryBudget(self.config.retry)

    def status(self) -> RouterStatus:
        now = self._clock()
        endpoints = [
            endpoint_status(s, self._breakers[n], self._policy, now)
            for n, s in self._states.items()
        ]
        q = self._queue
        return RouterStatus(
            running=self.running,
            policy=self._policy.name,
            endpoints=endpoints,
            queue=QueueStatus(len(q), q.capacity, q.depth_by_priority()),
            counters=dataclasses.replace(self.counters),
            retry_budget_remaining=self._budget.remaining(now),
            recent_events=list(self._events)[-20:],
        )

    # --- sending ---------------------------------------------------------------------------

    async def send(
        self,
        payload: Any,
        priority: int = DEFAULT_PRIORITY,
        deadline_s: float | None = None,
        service: str | None = None,
    ) -> RouteResult:
        """Deliver ``payload`` to the best endpoint; ``deadline_s`` counts from now.

        With ``service``, only endpoints registered for that service are considered; without,
        any endpoint is. Raises RouterStopped or NoEndpointAvailable (503; NoEndpointForService
        when no endpoint is registered for ``service``), QueueFull (429), AllAttemptsFailed (502)
        or DeadlineExpired (504).
        """
        if not self.running:
            self.counters.rejected += 1
            raise RouterStopped("routing is stopped")
        check_priority(priority)
        if service is not None and not any(
            s.endpoint.service == service for s in self._states.values()
        ):
            self.counters.rejected += 1
            raise NoEndpointForService(f"no endpoint is registered for service {service!r}")
        now = self._clock()
        deadline_s = self.config.default_deadline_s if deadline_s is None else deadline_s
        deadline = None if deadline_s is None else now + deadline_s
        state = await self._acquire(priority, now, deadline, service)
        self._budget.record_request(now)
        return await self._deliver(state, payload, deadline, priority, service)

    async def _acquire(
        self, priority: int, now: float, deadline: float | None, service: str | None
    ) -> EndpointState:
        self._drain(now)
        # Arrivals go behind anyone already waiting, or priorities would mean nothing. After a
        # drain, a waiter is left only if no free endpoint suits it, so a free endpoint that
        # suits this message suits nobody waiting.
        chosen = self._choose(now, (), service) if self._may_take(priority, now) else None
        if chosen is not None:
            self._dispatch(chosen, now)
            return chosen
        if not self._admitting(now, (), service):
            self.counters.rejected += 1
            raise NoEndpointAvailable(self._unavailable_reason(service), self._reopen_in(now))
        return await self._wait_in_queue(priority, now, deadline, service, ())

    def _admitting(
        self, now: float, exclude: tuple[str, ...] | list[str], service: str | None
    ) -> bool:
        return any(
            self._breakers[name].admits_traffic(now)
            for name, s in self._states.items()
            if name not in exclude and (service is None or s.endpoint.service == service)
        )

    def _unavailable_reason(self, service: str | None = None) -> str:
        if not self._states:
            return "no endpoint is registered"
        if service is not None:
            return f"every circuit breaker of service {service!r}'s endpoints is open"
        return "every endpoint's circuit breaker is open"

    def _reopen_in(self, now: float) -> float | None:
        waits = [b.retry_after_s(now) for b in self._breakers.values()]
        return min(waits) if waits else None

    async def _wait_in_queue(
        self,
        priority: int,
        now: float,
        deadline: float | None,
        service: str | None,
        exclude: tuple[str, ...],
    ) -> EndpointState:
        loop = asyncio.get_running_loop()
        waiter = _Waiting(loop.create_future(), service, exclude)
        try:
            item, removed = self._queue.push(waiter, priority, now, deadline)
        except QueueFull:
            self.counters.rejected += 1
            raise
        restricted = waiter.restricted
        self._restricted += restricted
        self._fail_removed(removed, now)
        timer = None if deadline is None else loop.call_later(deadline - now, self._expire, item)
        future = waiter.future
        try:
            return await future
        except asyncio.CancelledError:
            # The caller gave up; if a slot had already been handed over, give it back.
            handed_over = future.done() and not future.cancelled() and not future.exception()
            if not self._queue.remove(item) and handed_over:
                self._give_back(future.result())
            raise
        finally:
            self._restricted -= restricted
            if timer is not None:
                timer.cancel()

    def _expire(self, item: QueuedItem[_Waiting]) -> None:
        if self._queue.remove(item) and not item.value.future.done():
            self.counters.expired += 1
            item.value.future.set_exception(DeadlineExpired("deadline passed while queued"))

    def _fail_removed(self, removed: list[QueuedItem[_Waiting]], now: float) -> None:
        for item in removed:
            future = item.value.future
            if future.done():
                continue
            if item.reason == "expired":
                self.counters.expired += 1
                future.set_exception(DeadlineExpired("deadline passed while queued"))
            else:
                self.counters.rejected += 1
                retry = self._queue.retry_after_s(now)
                future.set_exception(
                    QueueFull("displaced by a more urgent message", retry_after=retry)
                )

    def _drain(self, now: float) -> None:
        """Hand free slots to waiting messages, most urgent (after aging) first.

        A waiter bound to a service, or retrying away from endpoints it already tried, only
        takes a slot that suits it; the others keep their place.
        """
        while len(self._queue):
            candidates = self._candidates(now, (), None)
            if not candidates:
                return
            popped = self._queue.pop(now, self._acceptable(candidates, now))
            self._fail_removed(popped.expired, now)
            item = popped.item
            if item is None:
                return
            waiter = item.value
            if waiter.future.done():  # its sender was cancelled a moment ago
                continue
            if waiter.restricted:
                candidates = [s for s in candidates if waiter.suits(s)]
            chosen = self._policy.choose(candidates, now)
            self._dispatch(chosen, now)
            waiter.future.set_result(chosen)

    def _may_take(self, priority: int, now: float) -> bool:
        """Below the default priority, a message leaves the reserved share of slots free."""
        if priority >= DEFAULT_PRIORITY or self.config.reserve_share <= 0:
            return True
        total = spare = 0
        for name, s in self._states.items():
            if self._breakers[name].admits_traffic(now):
                limit = s.endpoint.max_concurrency
                total += limit
                spare += max(limit - s.stats.in_flight, 0)
        return spare > int(total * self.config.reserve_share)

    def _acceptable(
        self, candidates: list[EndpointState], now: float
    ) -> Callable[[QueuedItem[_Waiting]], bool] | None:
        """Which waiters the free ``candidates`` may serve now; None when any of them."""
        suits = _suiting(candidates) if self._restricted else None
        if self._may_take(PRIORITY_MIN, now):
            return suits
        if suits is None:
            return _urgent
        return lambda item: _urgent(item) and suits(item)

    def _candidates(
        self, now: float, exclude: tuple[str, ...] | list[str], service: str | None
    ) -> list[EndpointState]:
        """Free endpoints that may take a message now, as the policy sees them worth it."""
        free: list[EndpointState] = []
        busy: list[EndpointState] = []
        for name, s in self._states.items():
            if name in exclude or (service is not None and s.endpoint.service != service):
                continue
            if s.has_capacity():
                if self._breakers[name].can_dispatch(now):
                    free.append(s)
            elif self._breakers[name].state(now) is BreakerState.CLOSED:
                busy.append(s)
        if not (free and busy):
            return free
        viable, look_again_s = self._policy.viable(free, busy, now)
        if look_again_s is not None:
            self._look_again(now + look_again_s)
        return viable

    def _look_again(self, at: float) -> None:
        """Drain at ``at`` (once, the earliest asked): messages held for a busy endpoint's
        slot must not wait for ever if it stalls."""
        if self._wake_at is not None and self._wake_at <= at:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # registering endpoints before the loop runs: nothing waits yet
            return
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_at = at
        delay = max(at - self._clock(), 0.0)
        self._wake_due = loop.time() + delay
        self._wake_handle = loop.call_later(delay, self._woken)

    def _woken(self) -> None:
        self._wake_at = self._wake_handle = None
        now = self._clock()
        # A timer that fires when due shows the loop running: silence from endpoints since
        # is theirs, not a stall of the router's own (see Adaptive._overdue).
        if asyncio.get_running_loop().time() - self._wake_due < LOOP_LAG_S:
            self._policy.tick(now)
        self._drain(now)

    def _choose(
        self, now: float, exclude: tuple[str, ...] | list[str], service: str | None
    ) -> EndpointState | None:
        candidates = self._candidates(now, exclude, service)
        return self._policy.choose(candidates, now) if candidates else None

    def _dispatch(self, state: EndpointState, now: float) -> None:
        state.stats.begin(now)
        breaker = self._breakers.get(state.name)
        if breaker is not None:
            breaker.on_dispatch(now)

    def _give_back(self, state: EndpointState) -> None:
        """Undo a dispatch whose call never happened or was abandoned by the caller."""
        now = self._clock()
        state.stats.abandon(now)
        breaker = self._breakers.get(state.name)
        if breaker is not None:
            breaker.on_abandon(now)
        self._drain(now)

    async def _deliver(
        self,
        state: EndpointState,
        payload: Any,
        deadline: float | None,
        priority: int = DEFAULT_PRIORITY,
        service: str | None = None,
    ) -> RouteResult:
        tried: list[str] = []
        while True:
            outcome = await self._attempt(state, payload, deadline)
            tried.append(state.name)
            if not outcome.failed:
                self.counters.routed += 1
                return self._result(state, outcome, len(tried))
            next_state = await self._retry_target(tried, deadline, priority, service)
            if next_state is None:
                raise self._failure(outcome, len(tried), deadline)
            self.counters.retried += 1
            state = next_state

    async def _retry_target(
        self, tried: list[str], deadline: float | None, priority: int, service: str | None
    ) -> EndpointState | None:
        """Another endpoint for a failed message, or None when it should not be retried.

        Every other endpoint being at its concurrency limit is no reason to give up: the
        retry waits for a slot in the queue, within the message's deadline, as a new message
        would. (A fast-failing endpoint is precisely the one with free slots when the healthy
        ones are busy.)
        """
        now = self._clock()
        if deadline is not None and now >= deadline:
            return None
        if len(tried) >= self.config.max_attempts:
            return None
        if not self._admitting(now, tried, service):  # never the same endpoint twice
            return None
        if not self._budget.try_withdraw(now):
            return None
        chosen = self._choose(now, tried, service) if self._may_take(priority, now) else None
        if chosen is not None:
            self._dispatch(chosen, now)
            return chosen
        try:
            return await self._wait_in_queue(priority, now, deadline, service, tuple(tried))
        except QueueFull:
            return None

    def _failure(
        self, outcome: _Outcome, attempts: int, deadline: float | None
    ) -> AllAttemptsFailed | DeadlineExpired:
        status = outcome.response.status if outcome.response is not None else None
        reason = outcome.error or f"status {status}"
        if deadline is not None and self._clock() >= deadline:
            self.counters.expired += 1
            return DeadlineExpired(f"deadline passed after {attempts} attempt(s); last: {reason}")
        self.counters.failed += 1
        return AllAttemptsFailed(
            f"{attempts} attempt(s) failed; last: {reason}", attempts, status, outcome.error
        )

    def _result(self, state: EndpointState, outcome: _Outcome, attempts: int) -> RouteResult:
        r = outcome.response
        assert r is not None
        return RouteResult(
            state.name, r.status, r.body, outcome.latency_s * 1000.0, attempts, r.headers
        )

    async def _attempt(
        self, state: EndpointState, payload: Any, deadline: float | None
    ) -> _Outcome:
        start = self._clock()
        ahead = state.stats.in_flight - 1  # calls the endpoint already had when this one went
        timeout = self.config.attempt_timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - start)
        if timeout <= 0:
            self._give_back(state)
            self.counters.expired += 1
            raise DeadlineExpired("deadline passed before the message could be sent")
        try:
            call = self._transport(state.endpoint, payload, timeout)
            response = await asyncio.wait_for(call, timeout)
        except asyncio.CancelledError:
            self._give_back(state)
            raise
        except Exception as exc:  # whatever the transport raises, this endpoint failed
            outcome = _Outcome(None, f"{type(exc).__name__}: {exc}", self._clock() - start)
        else:
            latency = response.latency
            outcome = _Outcome(
                response, None, self._clock() - start if latency is None else latency
            )
        self._finish(state, outcome, ahead)
        return outcome

    def _finish(self, state: EndpointState, outcome: _Outcome, ahead: int) -> None:
        now = self._clock()
        failed = outcome.failed
        if outcome.response is not None:
            self._read_headers(state, outcome.response.headers, now)
        state.stats.finish(now, outcome.latency_s, failed)
        breaker = self._breakers.get(state.name)
        if breaker is not None:  # None once the endpoint was removed mid-call
            breaker.record(now, failed, outcome.latency_s)
            self._policy.observe(state.name, outcome.latency_s, failed, now, ahead)
            self._record.add(Observation(now, state.name, outcome.latency_s, failed, ahead))
        self._drain(now)

    def _read_headers(self, state: EndpointState, headers: Mapping[str, str], now: float) -> None:
        if not headers:
            return
        lowered = {k.lower(): v for k, v in headers.items()}
        retry_after = _seconds(lowered.get("retry-after"))
        if retry_after is not None:
            state.stats.retry_after_until = now + retry_after
        depth = _seconds(lowered.get("x-queue-depth"))
        if depth is not None:
            state.stats.queued = int(depth)


def _urgent(item: QueuedItem[_Waiting]) -> bool:
    return item.priority >= DEFAULT_PRIORITY


def _suiting(candidates: list[EndpointState]) -> Callable[[QueuedItem[_Waiting]], bool]:
    return lambda item: any(item.value.suits(s) for s in candidates)


def _seconds(value: str | None) -> float | None:
    """A non-negative number from a header; HTTP dates and junk are ignored."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 else None
