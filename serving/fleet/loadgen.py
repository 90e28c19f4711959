"""The demo's load generator: messages sent through RelayCore (`POST /api/v2/relaycore/message`)
at a fixed rate, open loop, bounded in rate, concurrency and duration.

Open loop, as users arrive: the i-th message is due at i / rate whatever the answers do, so a slow
replica shows as latency rather than as less traffic. When `max_in_flight` messages are
outstanding, a due message is skipped and counted, never queued: the rate stays a ceiling.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

MESSAGE = "/api/v2/relaycore/message"
MAX_RATE = 200.0  # messages per second, at most
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_IN_FLIGHT = 256
STOP_CHECK_S = 0.05  # naps between sends are this short, so a stop is seen at any rate
KEPT_LATENCIES = 10_000  # the most recent, for the percentiles; a long run stays small


@dataclass(frozen=True)
class LoadConfig:
    """`rate` messages/s for `duration_s` (None: until stopped), spread over `services` in turn
    (an empty tuple lets RelayCore choose among every endpoint)."""

    rate: float = 20.0
    duration_s: float | None = None
    services: tuple[str, ...] = ()
    max_in_flight: int = 64
    priority: int = 5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and 0 < self.rate <= MAX_RATE):
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g}/s, not {self.rate}")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:g} s")
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be between 1 and {MAX_IN_FLIGHT}")


@dataclass
class LoadReport:
    sent: int = 0
    skipped: int = 0  # due while max_in_flight were outstanding
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer (transport error)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_LATENCIES))

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "sent": self.sent,
            "skipped": self.skipped,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": _percentile(ordered, 0.50),
            "p99_ms": _percentile(ordered, 0.99),
        }


def due_at(index: int, rate: float) -> float:
    """Seconds after the start when the index-th message is due."""
    return index / rate


def message_body(index: int, config: LoadConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"payload": {"seq": index}, "priority": config.priority}
    if config.services:
        body["service"] = config.services[index % len(config.services)]
    return body


async def run_load(
    client: httpx.AsyncClient,
    config: LoadConfig,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> LoadReport:
    """Sends until the duration is over or `stop` is set; waits for the answers outstanding."""
    stop = stop or asyncio.Event()
    report, pending = LoadReport(), set[asyncio.Task[None]]()
    start, index = clock(), 0
    while not stop.is_set():
        due = due_at(index, config.rate)
        if config.duration_s is not None and due >= config.duration_s:
            break
        wait = start + due - clock()
        if wait > 0:
            await sleep(min(wait, STOP_CHECK_S))
            continue
        if len(pending) >= config.max_in_flight:
            report.skipped += 1
        else:
            task = asyncio.create_task(_send(client, message_body(index, config), report, clock))
            pending.add(task)
            task.add_done_callback(pending.discard)
        index += 1
    if pending:
        await asyncio.gather(*pending)
    return report


async def _send(
    client: httpx.AsyncClient, body: dict[str, Any], report: LoadReport, clock: Callable[[], float]
) -> None:
    report.sent += 1
    started = clock()
    try:
        response = await client.post(MESSAGE, json=body)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    report.statuses[status] += 1
    report.latencies_ms.append((clock() - started) * 1000.0)


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
