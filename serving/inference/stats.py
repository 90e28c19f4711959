"""Live figures of each model served over the protocol, in this process: requests, errors, rows
and the latency of the last requests, as `GET /api/v2/models` reports them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 1024  # the latency percentiles are over this many last requests


@dataclass
class LiveStats:
    requests: int = 0
    errors: int = 0  # answers of 400 and above
    rows: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def record(self, status: int, rows: int, seconds: float) -> None:
        self.requests += 1
        self.errors += status >= 400
        self.rows += rows
        self.latency_ms.append(seconds * 1000.0)

    def snapshot(self) -> dict[str, float | int | None]:
        latencies = np.fromiter(self.latency_ms, float)
        p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (None, None)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rows": self.rows,
            "p50_ms": None if p50 is None else round(float(p50), 3),
            "p99_ms": None if p99 is None else round(float(p99), 3),
        }
