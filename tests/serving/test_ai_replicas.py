"""Per-replica healing through the real app and real HTTP: three demo replica processes are
registered in RelayCore; a fault in one drains that one only, a probe over HTTP brings it back
once it answers well again, and a surge on all three drains none."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from monitoring.config import get_orchestrator_settings
from monitoring.orchestrator import arrival
from monitoring.samples import METRICS
from monitoring.store import ingestion
from monitoring.store.metrics import read_samples
from serving.fleet.fleet import Fleet
from serving.fleet.plan import ReplicaSpec
from serving.fleet.processes import free_ports
from serving.fleet.relay import RelayRegistry
from serving.orchestrator.arrival import react_on_arrival
from tests.monitoring.test_orchestrator_replicas import LATENCY_FAULT, SURGE, replica_rows
from tests.support.polling import wait_for

AI = "/api/v2/ai"
RELAY = "/api/v2/relaycore/endpoints"
NAMES = ("checkout-0", "checkout-1", "checkout-2")


@pytest.fixture
def fleet(relay_app: Callable[..., Any]) -> Iterator[tuple[TestClient, Fleet]]:
    """The real app, and three replica processes of checkout registered in its RelayCore."""
    arrival.forget_warm()
    client: TestClient = relay_app()
    running = checkout_replicas(client)
    yield client, running
    running.stop()
    arrival.forget_warm()


@pytest.fixture
def watched_fleet(
    relay_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Fleet]]:
    """As `fleet`, healing on (auto) with the replica watch every second, and RelayCore on round
    robin: every replica gets its share of the traffic, faulty or not."""
    arrival.forget_warm()
    monkeypatch.setenv("HEALING_MODE", "auto")
    monkeypatch.setenv("HEALING_WATCH_SECONDS", "1")
    client: TestClient = relay_app(policy="round_robin")
    running = checkout_replicas(client)
    yield client, running
    running.stop()
    arrival.forget_warm()


def checkout_replicas(client: TestClient) -> Fleet:
    running = Fleet(RelayRegistry(client), seed=2)  # type: ignore[arg-type]
    ports = free_ports(3)
    running.start([ReplicaSpec("checkout", n, p, 5.0) for n, p in zip(NAMES, ports, strict=True)])
    return running


def seed(client: TestClient, fault: dict[str, dict[str, float]]) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    engine = client.app.state.automatrix.engine()  # type: ignore[attr-defined]
    ingestion.store_batch(engine, replica_rows(fault, now=now))


def optimize(client: TestClient) -> dict[str, Any]:
    response = client.post(f"{AI}/autonomous-optimization", json={"mode": "auto"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def drained(client: TestClient) -> set[str]:
    return {e["name"] for e in client.get(RELAY).json() if e["drained"]}


def test_fault_in_one_replica_drains_it_then_its_probes_restore_it(
    fleet: tuple[TestClient, Fleet],
) -> None:
    client, running = fleet
    seed(client, LATENCY_FAULT)
    faulty = running.replicas("checkout")[0]
    # The replica still fails when probed, so the drain holds on the next run.
    fault = {"kind": "errors", "rate": 1.0, "duration_s": 60}
    httpx.post(faulty.base_url + "/faults", json=fault, timeout=5).raise_for_status()

    first = optimize(client)
    assert [(a["kind"], a["replica"], a["state"]) for a in first["actions"]] == [
        ("drain_endpoint", "checkout-0", "succeeded")
    ]
    assert drained(client) == {"checkout-0"}
    anomalies = client.get(f"{AI}/anomalies", params={"service": "checkout"}).json()
    assert "checkout-0" in {a["replica"] for a in anomalies["anomalies"] if a["state"] == "open"}

    assert optimize(client)["actions"] == []  # probed: 503s, so it stays drained
    httpx.delete(faulty.base_url + "/faults", timeout=5).raise_for_status()
    [restore] = optimize(client)["actions"]
    assert (restore["kind"], restore["replica"], restore["state"]) == (
        "restore_endpoint",
        "checkout-0",
        "succeeded",
    )
    assert f"probed {faulty.url} 8x: status " + ", ".join(["200"] * 8) in restore["cause"]
    assert restore["params"]["probe"]["statuses"] == [200] * 8
    assert drained(client) == set()
    listed = client.get(f"{AI}/actions").json()["actions"]
    assert [(a["kind"], a["replica"]) for a in listed] == [
        ("restore_endpoint", "checkout-0"),
        ("drain_endpoint", "checkout-0"),
    ]


def test_surge_on_every_replica_drains_none(fleet: tuple[TestClient, Fleet]) -> None:
    client, _ = fleet
    seed(client, SURGE)
    report = optimize(client)
    assert set(NAMES) <= {a["replica"] for a in report["new_anomalies"]}
    assert [a for a in report["actions"] if a["kind"] == "drain_endpoint"] == []
    assert drained(client) == set()


def test_insights_scaling_starts_from_the_registered_undrained_replicas(
    fleet: tuple[TestClient, Fleet],
) -> None:
    client, _ = fleet
    seed(client, {})
    client.post(f"{RELAY}/checkout-2/drain").raise_for_status()
    scaling = client.get(f"{AI}/insights/checkout").json()["scaling"]
    assert scaling["current_replicas"] == 2
    assert scaling["reasons"][0] == (
        "current replicas: 2, the registered, undrained endpoints of checkout in RelayCore"
    )


def test_react_on_arrival_in_the_api_drains_the_faulty_replica_at_once(
    fleet: tuple[TestClient, Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, running = fleet
    monkeypatch.setenv("HEALING_MODE", "auto")
    get_orchestrator_settings.cache_clear()  # type: ignore[attr-defined]
    seed(client, LATENCY_FAULT)
    fault = {"kind": "errors", "rate": 1.0, "duration_s": 60}  # so its probes keep failing
    base = running.replicas("checkout")[0].base_url
    httpx.post(base + "/faults", json=fault, timeout=5).raise_for_status()
    found = client.portal.call(react_on_arrival, client.app, ["checkout"])  # type: ignore[arg-type]
    assert "checkout-0" in {a["replica"] for a in found["new_anomalies"]}
    assert [(a["kind"], a["replica"], a["state"]) for a in found["actions"]] == [
        ("drain_endpoint", "checkout-0", "succeeded")
    ]
    assert drained(client) == {"checkout-0"}
    [action] = client.get(f"{AI}/actions").json()["actions"]
    assert action["started_by"] == "api-push" and action["replica"] == "checkout-0"


def _as_json(sample: Any) -> dict[str, Any]:
    return {
        "service": sample.service,
        "replica": sample.replica,
        "timestamp": sample.timestamp.isoformat(),
        **{m: getattr(sample, m) for m in METRICS},
    }


def stage(
    fleet: tuple[TestClient, Fleet],
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, dict[str, float]],
    pushed_minutes: int,
) -> list[dict[str, Any]]:
    """HEALING_MODE=auto; the replicas' rows (with `fault`) stored but for their last minutes,
    which it returns as a push; checkout-0 itself fails every call, so its probes keep failing."""
    client, running = fleet
    monkeypatch.setenv("HEALING_MODE", "auto")
    get_orchestrator_settings.cache_clear()  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = replica_rows(fault, now=now)
    recent = now - timedelta(minutes=pushed_minutes)
    engine = client.app.state.automatrix.engine()  # type: ignore[attr-defined]
    ingestion.store_batch(engine, [r for r in rows if r.timestamp < recent])
    failing = {"kind": "errors", "rate": 1.0, "duration_s": 60}
    httpx.post(running.replicas("checkout")[0].base_url + "/faults", json=failing, timeout=5)
    return [_as_json(r) for r in rows if r.timestamp >= recent]


def test_a_push_is_scored_on_arrival_drains_the_faulty_replica_and_alerts(
    fleet: tuple[TestClient, Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = fleet
    pushed = stage(fleet, monkeypatch, LATENCY_FAULT, 4)  # the fault began six minutes ago
    response = client.post("/api/v2/metrics", json={"samples": pushed})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == len(pushed) and body["reaction_error"] is None
    assert "checkout-0" in {a["replica"] for a in body["new_anomalies"]}
    assert [(a["kind"], a["replica"], a["state"]) for a in body["actions"]] == [
        ("drain_endpoint", "checkout-0", "succeeded")
    ]
    assert drained(client) == {"checkout-0"}
    alerts = client.get(f"{AI}/alerts").json()["alerts"]
    firing = {(a["labels"]["alertname"], a["labels"].get("replica")) for a in alerts}
    assert {("ServiceAnomaly", "checkout-0"), ("HealingAction", "checkout-0")} <= firing


def test_a_push_the_reaction_fails_on_is_still_stored_and_says_why(
    fleet: tuple[TestClient, Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = fleet

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(arrival, "detect_arrived", broken)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    pushed = [_as_json(r) for r in replica_rows({}, now=now)[-3:]]
    body = client.post("/api/v2/metrics", json={"samples": pushed}).json()
    assert body["accepted"] == 3
    assert body["reaction_error"] == "RuntimeError: detector exploded"
    assert body["new_anomalies"] == [] and body["actions"] == []
    engine = client.app.state.automatrix.engine()  # type: ignore[attr-defined]
    with Session(engine) as session:
        stored = read_samples(session, start=now - timedelta(hours=1), end=now, replica=None)
    assert {(s.replica, s.timestamp) for s in stored} >= {
        (p["replica"], datetime.fromisoformat(p["timestamp"])) for p in pushed
    }


def test_the_watch_drains_a_replica_whose_relaycore_breaker_tripped_without_any_push(
    watched_fleet: tuple[TestClient, Fleet],
) -> None:
    """No row says anything: RelayCore's breaker is the evidence, seen within the watch's tick."""
    client, running = watched_fleet
    failing = {"kind": "errors", "rate": 1.0, "duration_s": 60}
    httpx.post(running.replicas("checkout")[0].base_url + "/faults", json=failing, timeout=5)
    for _ in range(30):  # retried on its peers, so the messages themselves succeed
        client.post("/api/v2/relaycore/message", json={"payload": {}, "service": "checkout"})
    wait_for(lambda: drained(client) == {"checkout-0"}, 30)
    [action] = client.get(f"{AI}/actions").json()["actions"]
    assert (action["kind"], action["replica"], action["state"]) == (
        "drain_endpoint",
        "checkout-0",
        "succeeded",
    )
    assert action["started_by"] == "relaycore-watch"
    # RelayCore's own evidence, whichever the watch's tick saw first: the tripped breaker, or
    # the error rate over the replica's last calls (on a loaded machine the tick can come late).
    assert re.search(r"RelayCore's circuit breaker for it is|RelayCore error rate", action["cause"])
    alerts = client.get(f"{AI}/alerts").json()["alerts"]
    assert [(a["labels"]["alertname"], a["labels"]["replica"]) for a in alerts] == [
        ("HealingAction", "checkout-0")
    ]
