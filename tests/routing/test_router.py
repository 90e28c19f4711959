import asyncio
import random
from collections import Counter

import pytest

from routing.breaker import BreakerConfig, BreakerEvent, BreakerState
from routing.endpoints import InvalidEndpoint
from routing.errors import (
    AllAttemptsFailed,
    DeadlineExpired,
    DuplicateEndpoint,
    NoEndpointAvailable,
    NoEndpointForService,
    QueueFull,
    RouterStopped,
    UnknownEndpoint,
)
from routing.retry import RetryBudgetConfig
from routing.router import Router, RouterConfig, RouteResult
from tests.support.routing import FakeClock, FakeTransport, Reply, RouterFactory, run, settle


def test_send_answers_with_endpoint_status_body_latency_and_attempts(
    make_router: RouterFactory,
) -> None:
    router = make_router("a")
    result = run(router.send({"x": 1}))
    assert (result.endpoint, result.status, result.attempts) == ("a", 200, 1)
    assert result.body == {"from": "a", "echo": {"x": 1}} and result.latency_ms == 10.0


def test_send_retries_failed_message_on_another_endpoint(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b")
    transport.replies["b"] = Reply(status=503)
    result = run(router.send({}))  # round robin starts with b
    assert transport.calls == ["b", "a"] and result.endpoint == "a" and result.attempts == 2
    assert router.counters.retried == 1


def test_send_never_retries_on_the_same_endpoint(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b", max_attempts=5)
    transport.replies = {"a": Reply(status=500), "b": Reply(status=500)}
    with pytest.raises(AllAttemptsFailed) as raised:
        run(router.send({}))
    assert sorted(transport.calls) == ["a", "b"] and raised.value.attempts == 2
    assert raised.value.http_status == 502 and raised.value.last_status == 500


def test_send_treats_transport_exception_as_failure(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a")
    transport.replies["a"] = Reply(raises=ConnectionRefusedError("refused"))
    with pytest.raises(AllAttemptsFailed, match="ConnectionRefusedError"):
        run(router.send({}))


def test_send_returns_client_error_without_retrying(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b")
    transport.replies = {"a": Reply(status=404), "b": Reply(status=404)}
    assert run(router.send({})).status == 404 and len(transport.calls) == 1


def test_send_stops_retrying_once_budget_is_spent(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    budget = RetryBudgetConfig(ratio=0.0, min_per_s=0.1, window_s=10.0)  # one retry in all
    router = make_router("a", "b", retry=budget, breaker=BreakerConfig(consecutive_failures=99))
    transport.replies["b"] = Reply(status=503)
    run(router.send({}))  # b fails, retried on a
    with pytest.raises(AllAttemptsFailed):
        run(router.send({}))  # round robin picks b again; no budget left
    assert router.counters.retried == 1 and router.counters.failed == 1


def test_send_without_endpoints_raises_no_endpoint_available(make_router: RouterFactory) -> None:
    with pytest.raises(NoEndpointAvailable, match="no endpoint") as raised:
        run(make_router().send({}))
    assert raised.value.http_status == 503


def test_send_with_every_breaker_open_raises_no_endpoint_available_with_retry_after(
    make_router: RouterFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    breaker = BreakerConfig(consecutive_failures=1, open_wait_s=4.0)
    router = make_router("a", breaker=breaker, max_attempts=1)
    transport.replies["a"] = Reply(status=500)
    with pytest.raises(AllAttemptsFailed):
        run(router.send({}))
    clock.advance(1.0)
    with pytest.raises(NoEndpointAvailable, match="breaker") as raised:
        run(router.send({}))
    assert raised.value.retry_after == 3.0


def test_send_when_stopped_raises_router_stopped(make_router: RouterFactory) -> None:
    router = make_router("a")
    router.stop()
    with pytest.raises(RouterStopped) as raised:
        run(router.send({}))
    assert raised.value.http_status == 503 and router.counters.rejected == 1


def test_send_after_restart_is_routed_again(make_router: RouterFactory) -> None:
    router = make_router("a")
    router.stop()
    router.start()
    assert run(router.send({})).endpoint == "a"


def test_send_rejects_priority_outside_zero_to_nine(make_router: RouterFactory) -> None:
    with pytest.raises(ValueError, match="priority"):
        run(make_router("a").send({}, priority=10))


def test_register_rejects_non_http_url(make_router: RouterFactory) -> None:
    router = make_router()
    with pytest.raises(InvalidEndpoint, match="http"):
        router.register("evil", "file:///etc/passwd")
    assert router.endpoints() == []


def test_register_rejects_duplicate_name(make_router: RouterFactory) -> None:
    with pytest.raises(DuplicateEndpoint) as raised:
        make_router("a").register("a", "http://h/other")
    assert raised.value.http_status == 409


def test_remove_unknown_endpoint_raises_unknown_endpoint(make_router: RouterFactory) -> None:
    with pytest.raises(UnknownEndpoint, match="ghost") as raised:
        make_router("a").remove("ghost")
    assert raised.value.http_status == 404


def test_send_after_removal_reaches_only_registered_endpoints(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b")
    router.remove("b")
    for _ in range(4):
        run(router.send({}))
    assert set(transport.calls) == {"a"}


def test_send_queues_when_saturated_and_serves_most_urgent_first(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> list[str]:
        router = make_router()
        router.register("a", "http://h/a", max_concurrency=1)
        gate, order = transport.hold("a"), []

        async def send(tag: str, priority: int) -> None:
            await router.send({"tag": tag}, priority=priority)
            order.append(tag)

        tasks = [asyncio.create_task(send("first", 5))]
        await settle()
        tasks += [asyncio.create_task(send(t, p)) for t, p in [("low", 1), ("high", 9)]]
        await settle()
        assert router.status().queue.by_priority[1] == 1
        gate.set()
        await asyncio.gather(*tasks)
        return order

    assert run(scenario()) == ["first", "high", "low"]


def test_send_to_full_queue_raises_queue_full_with_retry_after(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> QueueFull:
        router = make_router(queue_capacity=1)
        router.register("a", "http://h/a", max_concurrency=1)
        gate = transport.hold("a")
        tasks = [asyncio.create_task(router.send({})) for _ in range(2)]
        await settle()
        with pytest.raises(QueueFull) as raised:
            await router.send({})
        gate.set()
        await asyncio.gather(*tasks)
        return raised.value

    error = run(scenario())
    assert error.http_status == 429 and error.retry_after is not None and error.retry_after > 0


def test_send_displaced_low_priority_message_gets_queue_full(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> list[object]:
        router = make_router(queue_capacity=1)
        router.register("a", "http://h/a", max_concurrency=1)
        gate = transport.hold("a")
        busy = asyncio.create_task(router.send({}))
        await settle()
        low = asyncio.create_task(router.send({}, priority=0))
        await settle()
        high = asyncio.create_task(router.send({}, priority=9))
        await settle()
        gate.set()
        return list(await asyncio.gather(busy, low, high, return_exceptions=True))

    busy, low, high = run(scenario())
    assert isinstance(low, QueueFull) and not isinstance(high, Exception)


def test_send_expired_while_queued_is_answered_deadline_expired_and_never_sent(
    make_router: RouterFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    async def scenario() -> object:
        router = make_router()
        router.register("a", "http://h/a", max_concurrency=1)
        gate = transport.hold("a")
        busy = asyncio.create_task(router.send({"tag": "busy"}))
        await settle()
        late = asyncio.create_task(router.send({"tag": "late"}, deadline_s=0.5))
        await settle()
        clock.advance(1.0)
        gate.set()
        await busy
        return (await asyncio.gather(late, return_exceptions=True))[0]

    error = run(scenario())
    assert isinstance(error, DeadlineExpired) and error.http_status == 504
    assert transport.calls == ["a"]


def test_report_breaker_changes_to_listener(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b", breaker=BreakerConfig(consecutive_failures=1))
    events: list[BreakerEvent] = []
    router.add_listener(events.append)
    transport.replies["b"] = Reply(status=503)
    run(router.send({}))
    assert [(e.endpoint, e.new) for e in events] == [("b", BreakerState.OPEN)]
    assert router.recent_events() == events


def test_send_skips_endpoint_with_open_breaker(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b", breaker=BreakerConfig(consecutive_failures=1))
    transport.replies["b"] = Reply(status=503)
    for _ in range(5):
        run(router.send({}))
    assert transport.calls.count("b") == 1


def test_send_honours_retry_after_header_under_adaptive(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b", policy="adaptive")
    transport.replies["a"] = Reply(status=429, headers={"Retry-After": "30"})
    for _ in range(10):
        run(router.send({}))
    assert transport.calls.count("a") == 1


def test_status_reports_endpoints_queue_and_counters(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b", policy="adaptive")
    transport.replies["b"] = Reply(latency=0.05)
    for _ in range(6):
        run(router.send({}))
    status = router.status().as_dict()
    a = next(e for e in status["endpoints"] if e["name"] == "a")
    assert a["p50_ms"] == 10.0 and a["breaker"] == "closed" and a["score"] is not None
    assert status["queue"]["by_priority"][9] == 0 and status["counters"]["routed"] == 6
    assert status["policy"] == "adaptive" and status["running"] is True


def test_record_observed_latencies_for_replay(make_router: RouterFactory) -> None:
    router = make_router("a")
    run(router.send({}))
    (observation,) = router.observations()
    assert (observation.endpoint, observation.latency_s, observation.failed) == ("a", 0.01, False)


def test_record_how_many_calls_each_one_found_ahead_on_its_endpoint(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a")
    gate = transport.hold("a")

    async def three_at_once() -> None:
        sends = [asyncio.ensure_future(router.send({})) for _ in range(3)]
        await settle()
        gate.set()
        await asyncio.gather(*sends)

    run(three_at_once())
    assert sorted(o.ahead for o in router.observations()) == [0, 1, 2]


def test_set_policy_learns_from_recorded_latencies(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a", "b")
    transport.replies["b"] = Reply(latency=0.2)
    for _ in range(4):
        run(router.send({}))
    policy = router.set_policy("peak_ewma")
    assert policy.name == "peak_ewma"
    status = {e.name: e.score for e in router.status().endpoints}
    assert status["a"] == pytest.approx(0.01, rel=0.01) and status["b"] == pytest.approx(0.2)


def test_set_health_rejects_unknown_endpoint(make_router: RouterFactory) -> None:
    with pytest.raises(UnknownEndpoint):
        make_router("a").set_health("b", 0.5)


def test_cancel_queued_send_frees_its_place_in_queue(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> int:
        router = make_router()
        router.register("a", "http://h/a", max_concurrency=1)
        gate = transport.hold("a")
        busy = asyncio.create_task(router.send({}))
        await settle()
        waiting = asyncio.create_task(router.send({}))
        await settle()
        waiting.cancel()
        await settle()
        depth = router.status().queue.depth
        gate.set()
        await busy
        return depth

    assert run(scenario()) == 0


def test_read_queue_depth_header_into_endpoint_stats(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    router = make_router("a")
    transport.replies["a"] = Reply(headers={"X-Queue-Depth": "7"})
    run(router.send({}))
    assert router.status().endpoints[0].queued == 7


async def _teach(router: Router, transport: FakeTransport, latencies: dict[str, float]) -> None:
    """One answered message per endpoint, at the given latency, so adaptive knows them."""
    for name, latency in latencies.items():
        transport.replies[name] = Reply(latency=latency)
    for _ in range(2 * len(latencies)):
        await router.send({})


async def _second_message_while_fast_is_busy(
    make_router: RouterFactory, transport: FakeTransport
) -> tuple[Router, asyncio.Event, asyncio.Task[RouteResult], asyncio.Task[RouteResult]]:
    """Adaptive knows fast (10 ms) and slow (200 ms), one slot each; the first message holds
    fast's slot open, and a second one is sent."""
    router = make_router(policy="adaptive")
    router.register("fast", "http://h/fast", max_concurrency=1)
    router.register("slow", "http://h/slow", max_concurrency=1)
    await _teach(router, transport, {"fast": 0.010, "slow": 0.200})
    transport.calls.clear()
    gate = transport.hold("fast")
    first = asyncio.create_task(router.send({"n": 1}))
    await settle()
    second = asyncio.create_task(router.send({"n": 2}))
    await settle()
    return router, gate, first, second


def test_send_adaptive_waits_for_a_fast_slot_rather_than_take_a_far_slower_free_one(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> list[str]:
        router, gate, first, second = await _second_message_while_fast_is_busy(
            make_router, transport
        )
        assert transport.calls == ["fast"] and router.status().queue.depth == 1
        gate.set()
        await asyncio.gather(first, second)
        return transport.calls

    assert run(scenario()) == ["fast", "fast"]


def test_send_adaptive_gives_a_held_message_to_the_slow_endpoint_once_the_fast_one_stalls(
    make_router: RouterFactory, transport: FakeTransport, clock: FakeClock
) -> None:
    async def scenario() -> list[str]:
        _, gate, first, second = await _second_message_while_fast_is_busy(make_router, transport)
        clock.advance(1.0)  # the fast endpoint has said nothing for 100 times its latency
        await asyncio.wait_for(second, timeout=5)
        gate.set()
        await first
        return transport.calls

    assert run(scenario()) == ["fast", "slow"]


def test_send_low_priority_leaves_the_reserved_share_of_slots_to_urgent_messages(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> tuple[list[str], int, list[str]]:
        router = make_router(reserve_share=0.25)
        router.register("a", "http://h/a", max_concurrency=4)
        gate, order = transport.hold("a"), []

        async def send(tag: str, priority: int) -> None:
            await router.send({"tag": tag}, priority=priority)
            order.append(tag)

        lows = [asyncio.create_task(send(f"low{i}", 1)) for i in range(4)]
        await settle()
        in_flight_lows = len(transport.calls)  # three: the fourth slot is kept
        urgent = asyncio.create_task(send("urgent", 9))
        await settle()
        calls = list(transport.calls)
        gate.set()
        await asyncio.gather(*lows, urgent)
        return calls, in_flight_lows, order

    calls, in_flight_lows, order = run(scenario())
    assert in_flight_lows == 3 and len(calls) == 4  # the urgent message went at once
    assert sorted(order) == [
        "low0",
        "low1",
        "low2",
        "low3",
        "urgent",
    ]  # the fourth low still served


def test_send_default_priority_may_use_every_slot(
    make_router: RouterFactory, transport: FakeTransport
) -> None:
    async def scenario() -> int:
        router = make_router(reserve_share=0.25)
        router.register("a", "http://h/a", max_concurrency=4)
        gate = transport.hold("a")
        tasks = [asyncio.create_task(router.send({})) for _ in range(4)]
        await settle()
        sent = len(transport.calls)
        gate.set()
        await asyncio.gather(*tasks)
        return sent

    assert run(scenario()) == 4


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


# --- a message's service restricts routing to that service's endpoints ------------------------


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


# --- the adaptive policy probes an endpoint that never wins its sample ------------------------


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


# --- a fast-failing endpoint's messages are retried on a busy healthy one ---------------------


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
