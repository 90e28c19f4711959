"""Per-endpoint circuit breaker: keeps traffic away from an endpoint that fails or crawls.

States: closed (traffic flows) -> open (none) -> half-open (a few probes) -> closed or open.
Only "closed" and "open since t for w seconds" are stored; half-open is computed from the
time, so no timer is needed and tests move a fake clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from routing.windows import OutcomeRing


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """One change of state; ``at`` is when it happened, even if noticed later."""

    endpoint: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float


BreakerListener = Callable[[BreakerEvent], None]


@dataclass(slots=True)
class BreakerConfig:
    consecutive_failures: int = 5
    window_size: int = 50  # calls in the sliding window for the rates below
    min_calls: int = 20  # no rate-based trip on fewer calls: 1 failure of 2 is not 50%
    failure_rate: float = 0.5
    slow_call_s: float = 5.0
    slow_call_rate: float = 0.8
    open_wait_s: float = 1.0  # first wait before half-open
    backoff: float = 2.0  # each repeated trip multiplies the wait...
    max_open_wait_s: float = 60.0  # ...up to this
    half_open_probes: int = 3  # concurrent probes admitted when half-open
    probes_to_close: int = 3  # successful probes needed to close


class CircuitBreaker:
    def __init__(
        self,
        endpoint: str,
        config: BreakerConfig | None = None,
        listener: BreakerListener | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config or BreakerConfig()
        self.listener = listener
        self._opened_at: float | None = None
        self._wait = 0.0
        self._announced_half_open = False
        self._trips = 0  # consecutive trips without a lasting recovery; drives the backoff
        self._closed_at = float("-inf")
        self._consecutive = 0
        self._failures = OutcomeRing(self.config.window_size)
        self._slow = OutcomeRing(self.config.window_size)
        self._probes_in_flight = 0
        self._probe_successes = 0

    def state(self, now: float) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now < self._opened_at + self._wait:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def admits_traffic(self, now: float) -> bool:
        """Not open: the endpoint is usable now or as soon as a probe slot frees."""
        return self.state(now) is not BreakerState.OPEN

    def can_dispatch(self, now: float) -> bool:
        state = self._sync(now)
        if state is BreakerState.HALF_OPEN:
            return self._probes_in_flight < self.config.half_open_probes
        return state is BreakerState.CLOSED

    def on_dispatch(self, now: float) -> None:
        if self._sync(now) is BreakerState.HALF_OPEN:
            self._probes_in_flight += 1

    def on_abandon(self, now: float) -> None:
        """A dispatched call was abandoned unanswered: free its probe slot, learn nothing."""
        if self.state(now) is BreakerState.HALF_OPEN:
            self._probes_in_flight = max(self._probes_in_flight - 1, 0)

    def retry_after_s(self, now: float) -> float:
        """Seconds until an open breaker goes half-open; 0 when it is not open."""
        if self._opened_at is None:
            return 0.0
        return max(self._opened_at + self._wait - now, 0.0)

    def record(self, now: float, failed: bool, latency_s: float) -> None:
        slow = latency_s >= self.config.slow_call_s
        state = self._sync(now)
        if state is BreakerState.HALF_OPEN:
            self._record_probe(now, failed or slow)
        elif state is BreakerState.CLOSED:
            self._record_closed(now, failed, slow)
        # When open, late answers to calls sent before the trip carry no news.

    def _record_probe(self, now: float, bad: bool) -> None:
        self._probes_in_flight = max(self._probes_in_flight - 1, 0)
        if bad:
            self._trip(now, "half-open probe failed")
            return
        self._probe_successes += 1
        if self._probe_successes >= self.config.probes_to_close:
            self._close(now)

    def _record_closed(self, now: float, failed: bool, slow: bool) -> None:
        self._consecutive = self._consecutive + 1 if failed else 0
        self._failures.add(failed)
        self._slow.add(slow)
        reason = self._trip_reason()
        if reason:
            self._trip(now, reason)

    def _trip_reason(self) -> str | None:
        c = self.config
        if self._consecutive >= c.consecutive_failures:
            return f"{self._consecutive} consecutive failures"
        if len(self._failures) < c.min_calls:
            return None
        if self._failures.rate() >= c.failure_rate:
            return f"failure rate {self._failures.rate():.0%} over {len(self._failures)} calls"
        if self._slow.rate() >= c.slow_call_rate:
            return f"slow-call rate {self._slow.rate():.0%} over {len(self._slow)} calls"
        return None

    def _trip(self, now: float, reason: str) -> None:
        c = self.config
        old = self.state(now)
        # A breaker that stayed closed longer than the longest wait has recovered for real,
        # so the backoff starts over; a flapping one keeps waiting longer.
        if old is BreakerState.CLOSED and now - self._closed_at > c.max_open_wait_s:
            self._trips = 0
        self._trips += 1
        self._wait = min(c.open_wait_s * c.backoff ** (self._trips - 1), c.max_open_wait_s)
        self._opened_at = now
        self._announced_half_open = False
        self._reset_counts()
        self._emit(old, BreakerState.OPEN, f"{reason}; open for {self._wait:g}s", now)

    def _close(self, now: float) -> None:
        self._opened_at = None
        self._closed_at = now
        self._reset_counts()
        reason = f"{self.config.probes_to_close} probes succeeded"
        self._emit(BreakerState.HALF_OPEN, BreakerState.CLOSED, reason, now)

    def _reset_counts(self) -> None:
        self._consecutive = 0
        self._failures.clear()
        self._slow.clear()
        self._probes_in_flight = 0
        self._probe_successes = 0

    def _sync(self, now: float) -> BreakerState:
        """The state at ``now``, announcing a half-open transition the first time it is seen."""
        state = self.state(now)
        if state is BreakerState.HALF_OPEN and not self._announced_half_open:
            self._announced_half_open = True
            assert self._opened_at is not None
            at = self._opened_at + self._wait
            self._emit(BreakerState.OPEN, BreakerState.HALF_OPEN, "open wait elapsed", at)
        return state

    def _emit(self, old: BreakerState, new: BreakerState, reason: str, at: float) -> None:
        if self.listener is not None:
            self.listener(BreakerEvent(self.endpoint, old, new, reason, at))
