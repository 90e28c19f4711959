"""Routing by service, probing of starved endpoints, and retries away from a fast-failing one."""

import asyncio
import random
from collections import Counter

import pytest

from routing.breaker import BreakerConfig
from routing.errors import NoEndpointAvailable, NoEndpointForService
from routing.policies import Adaptive, AdaptiveParams
from routing.retry import RetryBudget, RetryBudgetConfig
from routing.router import Router, RouterConfig
from tests.routing.conftest import FakeClock, FakeTransport, Reply, run, settle, state


def _router(
    clock: FakeClock, transport: FakeTransport, policy: str = "round_robin", **config: object
) -> Router:
    return Router(
        transport,
        policy=policy,
        config=RouterConfig(**config),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(7),
    )


# --- 1. a message's service restricts routing to that service's endpoints ---------------------


def test_route_service_message_only_to_its_endpoints(
    clock: FakeClock, transport: FakeTransport
) -> None:
    router = _router(clock, transport, policy="adaptive")
    router.register("x1", "http://h/x1", service="billing")
    router.register("x2", "http://h/x2", service="billing")
    router.register("y1", "http://h/y1", service="search")
    router.register("any", "http://h/any")  # a RELAYCORE_ENDPOINTS entry: no service

    async def go() -> list[str]:
        return [(await router.send({}, service="billing")).endpoint for _ in range(40)]

    assert set(run(go())) == {"x1", "x2"}
    assert set(transport.calls) == {"x1", "x2"}


def test_route_message_without_service_to_any_endpoint(
    clock: FakeClock, transport: FakeTransport
) -> None:
    router = _router(clock, transport)
    router.register("x1", "http://h/x1", service="billing")
    router.register("any", "http://h/any")

    async def go() -> list[str]:
        return [(await router.send({})).endpoint for _ in range(4)]

    assert set(run(go())) == {"x1", "any"}


def test_reject_message_for_service_without_endpoint_with_503(
    clock: FakeClock, transport: FakeTransport
) -> None:
    router = _router(clock, transport)
    router.register("x1", "http://h/x1", service="billing")
    with pytest.raises(NoEndpointForService, match="'search'") as raised:
        run(router.send({}, service="search"))
    assert isinstance(raised.value, NoEndpointAvailable) and raised.value.http_status == 503
    assert transport.calls == [] and router.counters.rejected == 1


def test_retry_service_message_only_within_its_service(
    clock: FakeClock, transport: FakeTransport
) -> None:
    router = _router(clock, transport, max_attempts=3)
    router.register("x1", "http://h/x1", service="billing")
    router.register("x2", "http://h/x2", service="billing")
    router.register("y1", "http://h/y1", service="search")
    transport.replies["x2"] = Reply(status=503)
    transport.replies["x1"] = Reply(status=503)
    with pytest.raises(Exception, match="2 attempt"):
        run(router.send({}, service="billing"))
    assert sorted(transport.calls) == ["x1", "x2"]


def test_queue_service_message_without_blocking_other_services(
    clock: FakeClock, transport: FakeTransport
) -> None:
    router = _router(clock, transport)
    router.register("x1", "http://h/x1", max_concurrency=1, service="billing")
    router.register("y1", "http://h/y1", max_concurrency=1, service="search")

    async def go() -> tuple[str, str, str]:
        gate = transport.hold("x1")
        busy = asyncio.create_task(router.send({}, service="billing"))
        await settle()
        waiting = asyncio.create_task(router.send({}, service="billing", priority=9))
        await settle()
        # y1 is free: a search message goes at once, and the billing one keeps waiting for x1.
        other = await router.send({}, service="search", priority=0)
        await settle()
        assert not waiting.done() and router.status().queue.depth == 1
        gate.set()
        return (await busy).endpoint, (await waiting).endpoint, other.endpoint

    assert run(go()) == ("x1", "x1", "y1")


def test_keep_round_robin_turn_when_choosing_within_service(
    clock: FakeClock, transport: FakeTransport
) -> None:
    router = _router(clock, transport)
    for name in ("x1", "x2"):
        router.register(name, f"http://h/{name}", service="billing")
    router.register("y1", "http://h/y1", service="search")

    async def go() -> list[str]:
        return [(await router.send({}, service="billing")).endpoint for _ in range(4)]

    assert Counter(run(go())) == {"x1": 2, "x2": 2}


# --- 2. the adaptive policy probes an endpoint that never wins its sample ---------------------


def test_probe_adaptive_endpoint_starved_by_fading_errors(
    clock: FakeClock, transport: FakeTransport
) -> None:
    # The real run's case: d failed early (its process was not up yet), then became healthy.
    # Its cost (the best peer's latency x (1 + 20 x a fading error rate)) stays above the
    # others' for tens of seconds under light load, so without probing d got no traffic.
    router = _router(
        clock, transport, policy="adaptive", breaker=BreakerConfig(consecutive_failures=99)
    )
    for name in "abcd":
        router.register(name, f"http://h/{name}")
    transport.replies["d"] = Reply(raises=ConnectionRefusedError("not up yet"))

    async def go() -> list[str]:
        while "d" not in transport.calls:
            await router.send({})
            clock.advance(0.01)
        transport.replies.pop("d")
        transport.calls.clear()
        for _ in range(800):  # 40 s of sequential traffic, nothing in flight at choice
            await router.send({})
            clock.advance(0.05)
        return transport.calls

    calls = Counter(run(go()))
    assert calls["d"] >= 3, calls  # probed every probe_s (10 s) at least


def test_probe_adaptive_endpoint_never_chosen_on_next_decision() -> None:
    policy = Adaptive(random.Random(3), AdaptiveParams(probe_s=2.0))
    known = [state("a"), state("b"), state("c")]
    for s in known:
        policy.observe(s.name, 0.01, False, 0.0)
    for t in range(5):
        for _ in known:
            policy.choose(known, 0.1 * t)
    assert policy.choose([*known, state("new")], 1.0).name == "new"


def test_skip_adaptive_probe_while_one_is_in_flight() -> None:
    policy = Adaptive(random.Random(3), AdaptiveParams(probe_s=2.0))
    pool = [state("a"), state("b"), state("slow", in_flight=1)]
    for s in pool:
        policy.observe(s.name, 0.01 if s.name != "slow" else 1.0, False, 0.0)
    chosen = Counter(policy.choose(pool, 10.0 + 0.001 * i).name for i in range(50))
    assert chosen["slow"] == 0


# --- 5. a fast-failing endpoint's messages are retried on a busy healthy one ------------------


def test_retry_fast_failure_waits_for_busy_healthy_endpoint(
    clock: FakeClock, transport: FakeTransport
) -> None:
    # d answers 503 at once, so it is the one with free slots while a, b, c are at their
    # concurrency limit: the retry used to find no candidate and the message got a 502.
    router = _router(
        clock, transport, policy="adaptive", breaker=BreakerConfig(consecutive_failures=99)
    )
    for name in "abc":
        router.register(name, f"http://h/{name}", max_concurrency=1)
    transport.replies["d"] = Reply(status=503, latency=0.001)

    async def go() -> list[int]:
        gates = [transport.hold(n) for n in "abc"]
        held = [asyncio.create_task(router.send({"i": i})) for i in range(3)]
        await settle()
        assert sorted(transport.calls) == ["a", "b", "c"]
        router.register("d", "http://h/d", max_concurrency=1)
        fast = asyncio.create_task(router.send({"i": 3}))  # only d is free
        await settle()
        assert transport.calls[-1] == "d" and not fast.done()
        gates[1].set()
        results = [await fast, *[await t for t in held[1:2]]]
        for gate in gates:
            gate.set()
        await asyncio.gather(*held)
        return [r.status for r in results] + [results[0].attempts]

    assert run(go()) == [200, 200, 2]
    assert router.counters.failed == 0 and router.counters.retried == 1


def test_allow_retries_in_young_budget_window() -> None:
    # Right after start there is no traffic to take a ratio of: the minimum rate still allows
    # retries at once, for the whole window's worth.
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_per_s=10.0, window_s=10.0))
    budget.record_request(0.0)
    assert all(budget.try_withdraw(0.001 * i) for i in range(50))
