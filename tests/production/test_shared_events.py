"""Live events across API processes on one PostgreSQL store (LISTEN/NOTIFY).

Two `automatrix serve` processes share a PostgreSQL database, started once for the module. Each
routes to the same failing backend; messages sent through the first open its breaker. The same
across the workers of one instance with REDIS_URL (Redis pub/sub) is in test_worker_metrics.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.instances import (
    Instance,
    Listener,
    logs,
    mlflow_template,
    push,
    services,
    start_instance,
)
from tests.support.polling import wait_for
from tests.support.postgres import POSTGRES_ADMIN_URL, postgres_reachable
from tests.support.relaycore import Backend, start_backend

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def broker_up(instance: Instance) -> bool:
    try:
        return instance.component("event_broker").get("status") == "up"
    except (httpx.HTTPError, ValueError):
        return False


@pytest.fixture(scope="module")
def failing() -> Iterator[Backend]:
    backend = start_backend("failing", fail_status=500)
    yield backend
    backend.kill()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, failing: Backend) -> Iterator[list[Instance]]:
    """Two API processes on one fresh PostgreSQL database, their event brokers connected."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    folder = tmp_path_factory.mktemp("shared-events")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = f"automatrix_events_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    env = {
        "DATABASE_URL": POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}",
        "RELAYCORE_ENDPOINTS": f"failing={failing.url}",
        "RELAYCORE_STATUS_INTERVAL_S": "0.5",
    }
    template = mlflow_template(tmp_path_factory)
    started = [start_instance(folder, f"pg-{n}", template, env) for n in (1, 2)]
    try:
        try:
            wait_for(lambda: all(broker_up(i) or not i.alive() for i in started), 120, 0.2)
            assert all(i.alive() for i in started)
        except AssertionError as exc:
            raise AssertionError(f"the API processes did not connect:\n{logs(started)}") from exc
        yield started
    finally:
        for instance in started:
            instance.stop()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def open_breaker(instance: Instance, endpoint: str) -> None:
    """Sends messages through `instance` until its breaker on the failing endpoint opens."""

    def is_open() -> bool:
        httpx.post(f"{instance.base}/api/v2/relaycore/message", json={"payload": {}}, timeout=10)
        status = httpx.get(f"{instance.base}/api/v2/relaycore/status", timeout=10).json()
        return any(e["name"] == endpoint and e["breaker"] == "open" for e in status["endpoints"])

    wait_for(is_open, 30, 0.05)


def opened(listener: Listener, origin: str) -> list[dict[str, Any]]:
    return [e for e in listener.events("breaker", origin) if e["payload"]["new"] == "open"]


def test_breaker_opened_through_one_process_reaches_clients_of_the_other_once(
    pair: list[Instance],
) -> None:
    first, second = pair
    here, there = Listener.open(first), Listener.open(second)
    try:
        origin = here.origin
        assert origin != there.origin
        open_breaker(first, "failing")
        wait_for(lambda: opened(there, origin), 10)
        wait_for(lambda: there.events("routing", origin), 10)  # the first's router status too
        time.sleep(1.0)  # room for a duplicate to arrive, if one were coming
        assert opened(there, origin) == opened(here, origin)  # the same events, in order
        assert len({e["at"] for e in opened(here, origin)}) == len(opened(here, origin))  # no echo
        assert opened(there, origin)[0]["payload"]["endpoint"] == "failing"
        assert not opened(there, there.origin)  # the second routed nothing: nothing of its own
    finally:
        here.close()
        there.close()


def terminate_event_connections(database_url: str) -> int:
    """Ends every PostgreSQL session of the event brokers on that database, as a failover would."""
    name = database_url.rsplit("/", 1)[1]
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            ended = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND application_name = 'automatrix-events'"
                ),
                {"name": name},
            )
            return len(ended.all())
    finally:
        engine.dispose()


def test_broken_broker_connection_reconnects_and_local_clients_keep_receiving(
    pair: list[Instance],
) -> None:
    first, second = pair
    here, there = Listener.open(first), Listener.open(second)
    try:
        reconnects = first.component("event_broker")["reconnects"]
        assert terminate_event_connections(first.env["DATABASE_URL"]) == 4  # two per process
        push(first, "during-outage")
        wait_for(lambda: "during-outage" in services(here), 5)  # local delivery did not wait
        wait_for(lambda: first.component("event_broker")["reconnects"] > reconnects, 20)
        wait_for(lambda: broker_up(first) and broker_up(second), 20)
        push(first, "after-outage")
        wait_for(lambda: "after-outage" in services(there, here.origin), 10)
        assert services(here).count("during-outage") == 3  # one event of three rows, once
    finally:
        here.close()
        there.close()


def test_event_over_the_notify_bound_stays_local_and_is_counted(pair: list[Instance]) -> None:
    first, second = pair
    here, there = Listener.open(first), Listener.open(second)
    try:
        oversized = first.component("event_broker")["oversized"]
        push(first, "big", rows=200)  # about 25 kB as an event; NOTIFY takes under 8000 bytes
        wait_for(lambda: "big" in services(here), 5)
        assert first.component("event_broker")["oversized"] == oversized + 1
        push(first, "small-after-big")  # the link still carries the next one
        wait_for(lambda: "small-after-big" in services(there), 10)
        assert "big" not in services(there)
    finally:
        here.close()
        there.close()
