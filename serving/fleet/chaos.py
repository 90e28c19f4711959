"""The chaos schedule: every `interval_s`, one fault through the contract into one replica drawn
at random. The schedule is pure (clock and randomness injected); `inject` is the edge that POSTs.

Bounded: at most one fault per interval, each shorter than the interval, so no two overlap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from serving.fleet.faults import FaultKind
from serving.fleet.plan import ReplicaSpec, require_loopback

MIN_INTERVAL_S, MAX_INTERVAL_S = 30.0, 24 * 3600.0
MIN_FAULT_S, MAX_FAULT_S = 5.0, 3600.0
KINDS: tuple[FaultKind, ...] = ("latency", "errors")


@dataclass(frozen=True)
class ChaosConfig:
    interval_s: float = 180.0
    fault_s: float = 60.0
    kinds: tuple[FaultKind, ...] = KINDS
    factor: float = 20.0
    rate: float = 0.5

    def __post_init__(self) -> None:
        if not MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S:
            raise ValueError(
                f"chaos interval must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} s"
            )
        if not MIN_FAULT_S <= self.fault_s < self.interval_s or self.fault_s > MAX_FAULT_S:
            raise ValueError(
                f"a chaos fault lasts between {MIN_FAULT_S:g} s and less than the interval"
            )
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"chaos kinds must be among {', '.join(KINDS)}")


@dataclass(frozen=True)
class Injection:
    replica: ReplicaSpec
    body: dict[str, Any]  # the POST /faults body


class ChaosSchedule:
    """Says when the next fault is due and draws it; the first comes one interval after `start`."""

    def __init__(self, config: ChaosConfig, rng: random.Random, start: float) -> None:
        self.config, self.rng = config, rng
        self.next_at = start + config.interval_s

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def draw(self, replicas: Sequence[ReplicaSpec], now: float) -> Injection | None:
        """The fault due at `now`, if one is and there is a replica; moves to the next slot."""
        if not self.due(now):
            return None
        while self.next_at <= now:  # slots missed (a suspended process) are skipped, not replayed
            self.next_at += self.config.interval_s
        if not replicas:
            return None
        target = self.rng.choice(sorted(replicas, key=lambda s: s.name))
        kind = self.rng.choice(self.config.kinds)
        body: dict[str, Any] = {"kind": kind, "duration_s": self.config.fault_s}
        body.update(
            {"factor": self.config.factor} if kind == "latency" else {"rate": self.config.rate}
        )
        return Injection(target, body)


def inject(injection: Injection, timeout_s: float = 5.0) -> httpx.Response:
    """POSTs the fault to the replica's base URL (127.0.0.1 only)."""
    url = require_loopback(injection.replica.base_url) + "/faults"
    return httpx.post(url, json=injection.body, timeout=timeout_s)
