"""The fault contract of a demo replica, as pure state: what a fault is, its bounds, and which
faults are active at a given time (the clock is injected).

`POST {base}/faults` takes a `FaultRequest`; `latency` multiplies the service time by `factor`,
`errors` answers 503 to a `rate` share of requests, each for `duration_s` seconds, then clears by
itself. A new fault of a kind replaces the active one of that kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["latency", "errors"]


class FaultRequest(BaseModel):
    """The body of `POST /faults`; out-of-bounds or unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: FaultKind
    factor: float = Field(default=20.0, ge=1, le=100, description="latency multiplier")
    rate: float = Field(default=0.5, ge=0, le=1, description="share of requests answered 503")
    duration_s: float = Field(default=60.0, ge=1, le=3600, description="clears after this")


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    factor: float
    rate: float
    started: float
    until: float

    def describe(self, now: float) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "remaining_s": round(self.until - now, 3)}
        if self.kind == "latency":
            found["factor"] = self.factor
        else:
            found["rate"] = self.rate
        found["duration_s"] = round(self.until - self.started, 3)
        return found


class FaultBook:
    """The active faults of one replica; an expired fault is gone the moment its time is up."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._faults: dict[str, Fault] = {}

    def add(self, request: FaultRequest) -> Fault:
        now = self.clock()
        fault = Fault(request.kind, request.factor, request.rate, now, now + request.duration_s)
        self._faults[request.kind] = fault
        return fault

    def active(self) -> list[Fault]:
        now = self.clock()
        self._faults = {k: f for k, f in self._faults.items() if f.until > now}
        return list(self._faults.values())

    def clear(self) -> None:
        self._faults.clear()

    def latency_factor(self) -> float:
        return next((f.factor for f in self.active() if f.kind == "latency"), 1.0)

    def error_rate(self) -> float:
        return next((f.rate for f in self.active() if f.kind == "errors"), 0.0)

    def describe(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [f.describe(now) for f in self.active()]
