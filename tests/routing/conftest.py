"""Fixtures for RelayCore tests: a fake clock, a scripted transport and routers built on both."""

from __future__ import annotations

import random
from typing import Any

import pytest

from routing.router import Router, RouterConfig
from tests.support.routing import FakeClock, FakeTransport, RouterFactory


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport(clock: FakeClock) -> FakeTransport:
    return FakeTransport(clock)


@pytest.fixture
def make_router(clock: FakeClock, transport: FakeTransport) -> RouterFactory:
    def build(*names: str, policy: str = "round_robin", **config: Any) -> Router:
        router = Router(
            transport,
            policy=policy,
            config=RouterConfig(**config),
            clock=clock,
            rng=random.Random(7),
        )
        for name in names:
            router.register(name, f"http://127.0.0.1/{name}")
        return router

    return build
