"""Fakes for RelayCore tests: a clock moved by hand and a scripted transport, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from routing.endpoints import Endpoint, EndpointState, EndpointStats
from routing.router import Router, TransportResponse

T = TypeVar("T")


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    status: int = 200
    latency: float = 0.01
    headers: dict[str, str] = field(default_factory=dict)
    raises: Exception | None = None


class FakeTransport:
    """Answers per endpoint as scripted; a gate holds calls open to build up in-flight work."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.replies: dict[str, Reply] = {}
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, endpoint: Endpoint, payload: Any, timeout: float) -> TransportResponse:
        self.calls.append(endpoint.name)
        gate = self.gates.get(endpoint.name)
        if gate is not None:
            await gate.wait()
        reply = self.replies.get(endpoint.name, Reply())
        if reply.raises is not None:
            raise reply.raises
        return TransportResponse(
            reply.status, {"from": endpoint.name, "echo": payload}, reply.headers, reply.latency
        )

    def hold(self, name: str) -> asyncio.Event:
        gate = self.gates[name] = asyncio.Event()
        return gate


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


RouterFactory = Callable[..., Router]


def state(name: str, in_flight: int = 0, max_concurrency: int = 32) -> EndpointState:
    s = EndpointState(Endpoint(name, f"http://h/{name}", max_concurrency), EndpointStats())
    s.stats.in_flight = in_flight
    return s
