"""Retry budget, as in Finagle and Envoy: retries may add at most a share of recent traffic.

Without a budget, every failed message retried N times multiplies the load on a struggling
pool by N exactly when it can least take it (a retry storm). The budget allows retries up to
``ratio`` of the requests seen in the last ``window_s`` seconds, plus ``min_per_s`` so that a
quiet service can still retry at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.windows import BucketCounter


@dataclass(slots=True)
class RetryBudgetConfig:
    ratio: float = 0.2
    min_per_s: float = 10.0
    window_s: float = 10.0


class RetryBudget:
    def __init__(self, config: RetryBudgetConfig | None = None) -> None:
        self.config = config or RetryBudgetConfig()
        self._requests = BucketCounter(self.config.window_s)
        self._retries = BucketCounter(self.config.window_s)

    def record_request(self, now: float) -> None:
        self._requests.add(now)

    def try_withdraw(self, now: float) -> bool:
        """Spend one retry if the budget allows it; False means do not retry."""
        if self._retries.total(now) >= self.allowance(now):
            return False
        self._retries.add(now)
        return True

    def allowance(self, now: float) -> float:
        c = self.config
        return c.min_per_s * c.window_s + c.ratio * self._requests.total(now)

    def remaining(self, now: float) -> float:
        return max(self.allowance(now) - self._retries.total(now), 0.0)
