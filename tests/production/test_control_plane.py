"""RelayCore's shared control plane, with real processes: two `automatrix serve` on one store.

A change made through one API process (an endpoint added, removed, drained or put back, the
policy, stop and start) is applied by the other within a second: on PostgreSQL through
LISTEN/NOTIFY, on SQLite through the version poll. Killing one of the two while async messages
are in flight loses none, and the survivor keeps following the shared desired state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.postgres import POSTGRES_ADMIN_URL, postgres_reachable
from tests.support.relaycore import Backend, start_backend

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))
RELAY = "/api/v2/relaycore"
DEADLINE_S = 1.0  # the contract: every process applies a change within a second


@dataclass
class Pair:
    """Two API processes on one store, and the two backends they route to."""

    store: str
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]
    backends: dict[str, Backend]
    records: dict[str, Path]
    logs: list[Path] = field(default_factory=list)

    def url(self, which: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[which]}{RELAY}{path}"

    def get(self, which: int, path: str) -> Any:
        response = httpx.get(self.url(which, path), timeout=5)
        response.raise_for_status()
        return response.json()


def launch_pair(store: str, tmp: Path, mlflow_db: Path) -> Pair:
    records = {name: tmp / f"{name}.log" for name in ("left", "right")}
    backends = {
        name: start_backend(name, delay_ms=20, workers=32, record=record)
        for name, record in records.items()
    }
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": store,
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}",
        "OPTUNA_STORAGE": f"sqlite:///{tmp / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(tmp / "models"),
        "MODEL_RELOAD_INTERVAL": "600",
        "RELAYCORE_ENDPOINTS": ",".join(f"{n}={b.url}" for n, b in backends.items()),
        "RELAYCORE_LEASE_S": "4",  # above the slowest delivery below, which must not expire
        "RELAYCORE_DELIVERY_POLL_S": "0.1",
        "RELAYCORE_DELIVERY_BACKOFF_S": "0.2",
        "RELAYCORE_DELIVERY_CONCURRENCY": "4",
    }
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "RELAYCORE_POLICY", "REDIS_URL"):
        env.pop(name, None)
    ports = [free_port(), free_port()]
    logs = [tmp / f"api-{port}.log" for port in ports]
    processes = [
        subprocess.Popen(
            [AUTOMATRIX, "serve", "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    return Pair(store, ports, processes, backends, records, logs)


def wait_ready(pairs: list[Pair]) -> None:
    """Both pairs start at once: their start-ups (imports, mostly) overlap."""
    try:
        wait_for(lambda: all(_ready(pair, i) for pair in pairs for i in (0, 1)), 180, 0.2)
    except AssertionError as exc:
        logs = [log.read_text()[-3000:] for pair in pairs for log in pair.logs]
        raise AssertionError("\n".join(logs)) from exc


def _ready(pair: Pair, which: int) -> bool:
    try:
        return httpx.get(pair.url(which, "/status"), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_pair(pair: Pair) -> None:
    for process in pair.processes:
        if process.poll() is None:
            process.terminate()
    for process in pair.processes:
        process.wait(timeout=30)
    for backend in pair.backends.values():
        backend.kill()


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory, mlflow_db: Path) -> Iterator[dict[str, Pair]]:
    """A pair on PostgreSQL (if it is reachable) and a pair on SQLite, for the whole module."""
    found: dict[str, Pair] = {}
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"automatrix_control_{uuid.uuid4().hex[:8]}"
    try:
        if postgres_reachable():
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            store = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            found["postgres"] = launch_pair(store, tmp_path_factory.mktemp("pg"), mlflow_db)
        tmp = tmp_path_factory.mktemp("sqlite")
        found["sqlite"] = launch_pair(f"sqlite:///{tmp / 'automatrix.db'}", tmp, mlflow_db)
        wait_ready(list(found.values()))
        yield found
    finally:
        for pair in found.values():
            stop_pair(pair)
        if "postgres" in found:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_pair(pairs: dict[str, Pair]) -> Pair:
    if "postgres" not in pairs:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    return pairs["postgres"]


@pytest.fixture
def sqlite_pair(pairs: dict[str, Pair]) -> Pair:
    return pairs["sqlite"]


STORES = [
    pytest.param("postgres_pair", marks=pytest.mark.postgres, id="postgres-notify"),
    pytest.param("sqlite_pair", id="sqlite-poll"),
]


@pytest.fixture(params=STORES)
def pair(request: pytest.FixtureRequest) -> Pair:
    found: Pair = request.getfixturevalue(request.param)
    return found


def applied_within(condition: Callable[[], bool], deadline_s: float = DEADLINE_S) -> float:
    """Seconds until `condition` held, polled from now; fails once `deadline_s` has passed."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        assert elapsed < deadline_s, f"not applied by the other process within {deadline_s} s"
        time.sleep(0.02)


def endpoints_of(pair: Pair, which: int) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pair.get(which, "/endpoints")}


def test_each_api_watches_the_store_the_way_it_offers(pair: Pair) -> None:
    expected = "listen" if pair.store.startswith("postgresql") else "poll"
    for which in (0, 1):
        found = pair.get(which, "/status")["control"]
        assert found["watch"] == expected and found["problem"] is None


def test_add_endpoint_through_one_api_is_listed_by_the_other(pair: Pair) -> None:
    body = {"name": "added", "url": "http://127.0.0.1:9/added", "service": "svc"}
    assert httpx.post(pair.url(0, "/endpoints"), json=body, timeout=5).status_code == 201
    try:
        applied_within(lambda: "added" in endpoints_of(pair, 1))
        assert endpoints_of(pair, 1)["added"]["service"] == "svc"
    finally:
        httpx.delete(pair.url(0, "/endpoints/added"), timeout=5)


def test_remove_endpoint_through_one_api_is_gone_from_the_other(pair: Pair) -> None:
    body = {"name": "doomed", "url": "http://127.0.0.1:9/doomed"}
    assert httpx.post(pair.url(1, "/endpoints"), json=body, timeout=5).status_code == 201
    applied_within(lambda: "doomed" in endpoints_of(pair, 0))
    assert httpx.delete(pair.url(1, "/endpoints/doomed"), timeout=5).status_code == 200
    applied_within(lambda: "doomed" not in endpoints_of(pair, 0))


def test_drain_and_undrain_through_one_api_reach_the_other(pair: Pair) -> None:
    assert httpx.post(pair.url(0, "/endpoints/right/drain"), timeout=5).json()["drained"] is True
    try:
        applied_within(lambda: endpoints_of(pair, 1)["right"]["drained"])
        sent_to = {send(pair, 1, i)["endpoint"] for i in range(10)}
        assert sent_to == {"left"}  # the other process routes nothing new to the drained one
    finally:
        httpx.post(pair.url(0, "/endpoints/right/undrain"), timeout=5)
    applied_within(lambda: not endpoints_of(pair, 1)["right"]["drained"])
    assert "right" in {e["name"] for e in pair.get(1, "/status")["endpoints"]}


def send(pair: Pair, which: int, i: int) -> Any:
    response = httpx.post(pair.url(which, "/message"), json={"payload": {"id": i}}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_set_policy_through_one_api_switches_the_other(pair: Pair) -> None:
    for policy in ("least_request", "adaptive"):
        body = {"policy": policy}
        assert httpx.put(pair.url(1, "/policy"), json=body, timeout=5).json() == body
        applied_within(lambda p=policy: pair.get(0, "/status")["policy"] == p)  # type: ignore[misc]


def test_stop_and_start_through_one_api_reach_the_other(pair: Pair) -> None:
    assert httpx.post(pair.url(0, "/stop"), timeout=5).json() == {"running": False}
    try:
        applied_within(lambda: pair.get(1, "/status")["running"] is False)
        refused = httpx.post(pair.url(1, "/message"), json={"payload": {}}, timeout=5)
        assert refused.status_code == 503
    finally:
        assert httpx.post(pair.url(0, "/start"), timeout=5).json() == {"running": True}
    applied_within(lambda: pair.get(1, "/status")["running"] is True)
    assert send(pair, 1, 0)["status"] == 200


@pytest.mark.postgres
def test_kill_one_api_mid_load_delivers_each_async_message_and_the_survivor_follows_drains(
    postgres_pair: Pair,
) -> None:
    from monitoring.store import control, durable
    from monitoring.store.engine import make_engine

    pair, total = postgres_pair, 60
    for backend in pair.backends.values():
        backend.control(delay_ms=1500)  # slow, so that deliveries are in flight at the kill
    ids = [enqueue(pair, i % 2, i) for i in range(total // 2)]  # half through each process
    wait_for(lambda: len(received(pair)) >= 4, 30, 0.02)
    pair.processes[0].send_signal(signal.SIGKILL)
    pair.processes[0].wait(timeout=10)
    assert len(set(received(pair))) < total // 2  # the kill came mid-delivery
    ids += [enqueue(pair, 1, i) for i in range(total // 2, total)]
    for backend in pair.backends.values():
        backend.control(delay_ms=20)
    engine = make_engine(pair.store)
    try:
        # A drain written by some other process after the kill: the survivor still follows.
        control.set_drained(engine, "right", True)
        applied_within(lambda: endpoints_of(pair, 1)["right"]["drained"])
        assert {send(pair, 1, i)["endpoint"] for i in range(10)} == {"left"}
        wait_for(lambda: set(ids) <= set(received(pair)), 60, 0.2)
        wait_for(lambda: durable.counts(engine)["delivered"] == total, 15, 0.2)
        assert states(pair, ids[:5] + ids[-5:]) == {"delivered": 10}
    finally:
        engine.dispose()
    keys = Counter(received(pair))
    assert set(keys) == set(ids)  # every accepted message arrived ...
    # ... and again only if the killed process had it in flight (its Idempotency-Key repeats)
    assert sum(keys.values()) - total <= 4  # its delivery concurrency


def enqueue(pair: Pair, which: int, i: int) -> str:
    body = {"payload": {"id": i}, "async": True}
    response = httpx.post(pair.url(which, "/message"), json=body, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def received(pair: Pair) -> list[str]:
    """The Idempotency-Key of each async delivery the backends got (sync messages have none)."""
    lines = [
        line.split()[0]
        for record in pair.records.values()
        if record.exists()
        for line in record.read_text().splitlines()
    ]
    return [key for key in lines if key != "-"]


def states(pair: Pair, ids: list[str]) -> Counter[str]:
    return Counter(pair.get(1, f"/messages/{i}")["state"] for i in ids)
