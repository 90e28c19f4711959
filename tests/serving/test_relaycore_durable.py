"""Durable async messages: claims, leases, outcomes (SQLite and PostgreSQL) and delivery via the API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from monitoring.store import durable, migrate
from monitoring.store.engine import make_engine
from tests.support.polling import wait_for
from tests.support.relaycore import Backend

MESSAGE = "/api/v2/relaycore/message"


def store(url: str) -> Engine:
    migrate.upgrade(url)
    return make_engine(url)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    return store(f"sqlite:///{tmp_path / 'store.db'}")


def fill(engine: Engine, n: int, priority: int = 5) -> list[str]:
    return [durable.enqueue(engine, {"id": i}, priority=priority, max_attempts=3) for i in range(n)]


def claim_concurrently(engines: list[Engine], total: int, batch: int = 7) -> list[list[str]]:
    """Each engine claims in a loop on its own thread until nothing is left."""
    found: list[list[str]] = [[] for _ in engines]
    barrier = threading.Barrier(len(engines))

    def work(index: int) -> None:
        barrier.wait()
        while sum(len(f) for f in found) < total:
            claimed = durable.claim(engines[index], batch, lease_s=60)
            if not claimed and sum(len(f) for f in found) >= total:
                return
            found[index].extend(c.id for c in claimed)
            time.sleep(0.001)  # as a delivery loop does between claims: lets the other claimer in

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return found


def test_claim_messages_concurrently_on_sqlite_never_claims_one_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = fill(store(url), 120)
    found = claim_concurrently([make_engine(url), make_engine(url)], len(ids))
    claimed = found[0] + found[1]
    assert sorted(claimed) == sorted(ids)
    assert found[0] and found[1]


@pytest.mark.postgres
def test_claim_messages_concurrently_on_postgres_never_claims_one_twice(postgres_url: str) -> None:
    ids = fill(store(postgres_url), 200)
    found = claim_concurrently([make_engine(postgres_url) for _ in range(3)], len(ids), batch=5)
    claimed = [i for f in found for i in f]
    assert len(claimed) == len(set(claimed)) == len(ids)
    assert sum(1 for f in found if f) >= 2


def test_claim_messages_takes_most_urgent_first(sqlite_engine: Engine) -> None:
    fill(sqlite_engine, 3, priority=1)
    urgent = fill(sqlite_engine, 2, priority=9)
    assert sorted(c.id for c in durable.claim(sqlite_engine, 2, lease_s=60)) == sorted(urgent)


def test_claim_message_after_lease_expiry_takes_it_again(sqlite_engine: Engine) -> None:
    [message_id] = fill(sqlite_engine, 1)
    [first] = durable.claim(sqlite_engine, 5, lease_s=60)
    assert durable.claim(sqlite_engine, 5, lease_s=60) == []
    later = durable.now_utc() + timedelta(seconds=61)
    [second] = durable.claim(sqlite_engine, 5, lease_s=60, now=later)
    assert second.id == message_id and second.attempts == 2
    assert not durable.mark_delivered(sqlite_engine, first, "a", 200)  # the stale claim lost it
    assert durable.mark_delivered(sqlite_engine, second, "a", 200)
    found = durable.get(sqlite_engine, message_id)
    assert found is not None and found.state == durable.DELIVERED and found.endpoint == "a"


def test_retry_message_later_waits_for_its_backoff(sqlite_engine: Engine) -> None:
    fill(sqlite_engine, 1)
    [claimed] = durable.claim(sqlite_engine, 1, lease_s=60)
    assert durable.retry_later(sqlite_engine, claimed, "boom", delay_s=30)
    assert durable.claim(sqlite_engine, 1, lease_s=60) == []
    [again] = durable.claim(
        sqlite_engine, 1, lease_s=60, now=durable.now_utc() + timedelta(seconds=31)
    )
    assert again.attempts == 2


def message_state(client: Any, message_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v2/relaycore/messages/{message_id}")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_deliver_async_message_sends_its_id_as_idempotency_key_and_the_request_id(
    relay_app: Callable[..., Any], backends: Callable[..., Backend], tmp_path: Path
) -> None:
    record = tmp_path / "keys.log"
    client = relay_app(endpoints={"a": backends("a", record=record).url})
    accepted = client.post(
        MESSAGE,
        json={"payload": {"id": 7}, "async": True, "priority": 8},
        headers={"X-Request-ID": "order-42"},
    )
    assert accepted.status_code == 202
    message_id = accepted.json()["id"]
    wait_for(lambda: message_state(client, message_id)["state"] == "delivered", 15)
    state = message_state(client, message_id)
    assert state["attempts"] == 1 and state["endpoint"] == "a" and state["response_status"] == 200
    assert state["request_id"] == "order-42"
    assert record.read_text().split() == [message_id, "7", "order-42"]


def test_deliver_async_message_to_failing_endpoint_fails_after_its_attempts(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    client = relay_app(
        endpoints={"a": backends("a", fail_status=500).url},
        delivery_attempts=2,
        delivery_backoff_s=0.05,
    )
    message_id = client.post(MESSAGE, json={"payload": {}, "async": True}).json()["id"]
    wait_for(lambda: message_state(client, message_id)["state"] == "failed", 20)
    state = message_state(client, message_id)
    assert state["attempts"] == 2
    assert "gave up after 2 attempts" in state["last_error"] and "500" in state["last_error"]


def test_deliver_async_message_refused_with_4xx_fails_at_once(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"a": backends("a", fail_status=400).url})
    message_id = client.post(MESSAGE, json={"payload": {}, "async": True}).json()["id"]
    wait_for(lambda: message_state(client, message_id)["state"] == "failed", 15)
    state = message_state(client, message_id)
    assert state["attempts"] == 1 and state["response_status"] == 400


def test_deliver_async_messages_waits_while_stopped(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"a": backends("a").url})
    client.post("/api/v2/relaycore/stop")
    engine = client.app.state.automatrix.engine()
    [message_id] = fill(engine, 1)
    time.sleep(0.6)  # a few delivery polls
    assert message_state(client, message_id)["state"] == "queued"
    client.post("/api/v2/relaycore/start")
    wait_for(lambda: message_state(client, message_id)["state"] == "delivered", 15)


def test_get_message_unknown_returns_404(relay_app: Callable[..., Any]) -> None:
    client = relay_app()
    assert client.get("/api/v2/relaycore/messages/nope").status_code == 404


def test_purge_finished_messages_older_than_retention(sqlite_engine: Engine) -> None:
    ids = fill(sqlite_engine, 3)
    claimed = {c.id: c for c in durable.claim(sqlite_engine, 3, lease_s=60)}
    durable.mark_delivered(sqlite_engine, claimed[ids[0]], "a", 200)
    durable.mark_failed(sqlite_engine, claimed[ids[1]], "gave up")
    # ids[2] stays in flight: never purged, however old
    assert durable.purge(sqlite_engine, durable.now_utc() - timedelta(hours=1)) == 0
    assert durable.purge(sqlite_engine, durable.now_utc() + timedelta(seconds=1)) == 2
    assert [durable.get(sqlite_engine, i) is None for i in ids] == [True, True, False]


def test_purge_delivered_messages_from_delivery_worker(sqlite_engine: Engine) -> None:
    import asyncio

    from routing import Router
    from serving.relaycore.delivery import DeliveryConfig, DeliveryWorker

    ids = fill(sqlite_engine, 2)
    claimed = durable.claim(sqlite_engine, 2, lease_s=60)
    for c in claimed:
        durable.mark_delivered(sqlite_engine, c, "a", 200)

    async def never(*_: object) -> Any:
        raise AssertionError("nothing is due")

    worker = DeliveryWorker(
        Router(never),
        lambda: sqlite_engine,
        DeliveryConfig(retention_s=0.0, purge_interval_s=3600.0, poll_s=0.01),
    )

    async def go() -> None:
        task = asyncio.create_task(worker.run())
        for _ in range(200):
            if worker.purged:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert worker.purged == 2 and all(durable.get(sqlite_engine, i) is None for i in ids)


def test_deliver_async_service_message_only_to_its_endpoints(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    billing, other = backends("billing"), backends("other")
    client = relay_app(endpoints={"other": other.url})
    client.post(
        "/api/v2/relaycore/endpoints", json={"name": "b1", "url": billing.url, "service": "billing"}
    )
    ids = [
        client.post(
            MESSAGE, json={"payload": {"id": i}, "service": "billing", "async": True}
        ).json()["id"]
        for i in range(5)
    ]
    states = {}

    def delivered() -> bool:
        states.update({i: client.get(f"/api/v2/relaycore/messages/{i}").json() for i in ids})
        return all(s["state"] == "delivered" for s in states.values())

    wait_for(delivered, 20)
    assert {s["endpoint"] for s in states.values()} == {"b1"}


def test_fail_async_message_for_service_without_endpoint_after_attempts(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    client = relay_app(
        endpoints={"plain": backends("plain").url}, delivery_attempts=2, delivery_backoff_s=0.1
    )
    message_id = client.post(
        MESSAGE, json={"payload": {}, "service": "nobody", "async": True}
    ).json()["id"]
    found: dict[str, Any] = {}

    def failed() -> bool:
        found.update(client.get(f"/api/v2/relaycore/messages/{message_id}").json())
        return found["state"] == "failed"

    wait_for(failed, 20)
    assert found["attempts"] == 2 and "'nobody'" in found["last_error"]
