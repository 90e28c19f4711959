"""The orchestration flow end to end: simulated incidents in, anomalies and decisions out."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.ingest import ingest_flow
from flows.orchestrate import orchestrate_flow, react_on_arrival
from monitoring.config import reset
from monitoring.orchestrator import arrival
from monitoring.samples import METRICS
from monitoring.store import ingestion
from monitoring.store.engine import open_store
from monitoring.store.orchestrator import AnomalyFilter, SqlActionRepository, find_anomalies
from monitoring.store.tables import Incident
from serving.fleet.fleet import Fleet
from serving.fleet.plan import ReplicaSpec
from serving.fleet.processes import free_ports
from serving.fleet.relay import RelayRegistry
from serving.settings import ServingSettings
from tests.monitoring.test_orchestrator_replicas import LATENCY_FAULT, replica_rows
from tests.support.polling import wait_for

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]
NOW = datetime(2024, 5, 10, tzinfo=UTC)
SLACK = timedelta(minutes=30)


@pytest.fixture
def store(settings: ServingSettings, monkeypatch: pytest.MonkeyPatch) -> ServingSettings:
    """Four simulated days of five services, their incidents in the store; webhook configured."""
    monkeypatch.setenv("HEALING_WEBHOOK_URL", "http://127.0.0.1:9/scale")
    monkeypatch.setenv("SCALING_TARGET_CPU", "1")
    reset()
    ingest_flow(source="simulator", start=NOW - timedelta(days=4), end=NOW)
    yield settings
    reset()


def incidents(settings: ServingSettings, since: datetime) -> list[Incident]:
    with Session(open_store(settings.database_url)) as session:
        return list(session.scalars(select(Incident).where(Incident.end > since)))


def test_orchestrate_flow_finds_anomalies_around_injected_incidents(store: ServingSettings) -> None:
    result = orchestrate_flow(as_of=NOW)
    truth = incidents(store, NOW - timedelta(days=1))
    found = result["new_anomalies"]

    def near(a: dict, i: Incident) -> bool:
        start, end = datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"])
        return a["service"] == i.service and start <= i.end + SLACK and end >= i.start - SLACK

    caught = [i for i in truth if any(near(a, i) for a in found)]
    true_alarms = [a for a in found if any(near(a, i) for i in truth)]
    assert len(truth) >= 3
    assert len(caught) >= 0.6 * len(truth)
    assert len(true_alarms) >= 0.6 * len(found)
    stored = find_anomalies(open_store(store.database_url), AnomalyFilter())
    assert len(stored) == len(found)


def test_orchestrate_flow_dry_run_by_default_and_rate_limited_next_run(
    store: ServingSettings,
) -> None:
    first = orchestrate_flow(as_of=NOW)
    assert first["mode"] == "dry_run" and len(first["services"]) == 5
    assert {a["kind"] for a in first["actions"]} == {"scaling_webhook"}
    assert {a["state"] for a in first["actions"]} == {"dry_run"}
    assert all(0 <= r <= 1 for r in first["risks"].values())
    second = orchestrate_flow(as_of=NOW + timedelta(minutes=5))
    assert second["new_anomalies"] == [] or all(
        datetime.fromisoformat(a["start"]) >= NOW for a in second["new_anomalies"]
    )
    assert {a["state"] for a in second["actions"]} == {"rate_limited"}


def test_orchestrate_flow_auto_records_failed_webhook_without_retry(store: ServingSettings) -> None:
    result = orchestrate_flow(mode="auto", as_of=NOW)
    repository = SqlActionRepository(open_store(store.database_url))
    actions = repository.list()
    assert len(actions) == len(result["actions"]) == 5
    assert {a.state for a in actions} == {"failed"}
    assert all("unreachable" in (a.result or "") for a in actions)


@pytest.fixture
def api_and_fleet(
    settings: ServingSettings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Fleet]]:
    """The API on a real socket (a thread, on the test's store) holding RelayCore, and three
    replica processes of checkout registered in it; the flow reaches it as ORCHESTRATOR_API_URL."""
    import uvicorn

    from serving.app import create_app

    arrival.forget_warm()
    port = free_ports(1)[0]
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60)
    api = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=api, timeout=10)
    running = Fleet(RelayRegistry(client), seed=4)
    names = ("checkout-0", "checkout-1", "checkout-2")
    running.start(
        [ReplicaSpec("checkout", n, p, 5.0) for n, p in zip(names, free_ports(3), strict=True)]
    )
    monkeypatch.setenv("ORCHESTRATOR_API_URL", api)
    reset()
    yield api, running
    running.stop()
    client.close()
    server.should_exit = True
    thread.join(timeout=15)
    arrival.forget_warm()


def test_orchestrate_flow_drains_the_faulty_replica_over_http_then_restores_it_on_its_probes(
    settings: ServingSettings, api_and_fleet: tuple[str, Fleet]
) -> None:
    api, running = api_and_fleet
    engine = open_store(settings.database_url)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT, now=now))
    faulty = running.replicas("checkout")[0]

    first = orchestrate_flow(mode="auto", as_of=now)
    assert [(a["kind"], a["replica"], a["state"]) for a in first["actions"]] == [
        ("drain_endpoint", "checkout-0", "succeeded")
    ]
    endpoints = httpx.get(f"{api}/api/v2/relaycore/endpoints", timeout=5).json()
    assert {e["name"] for e in endpoints if e["drained"]} == {"checkout-0"}

    later = now + timedelta(minutes=1)
    [restore] = orchestrate_flow(mode="auto", as_of=later)["actions"]
    assert (restore["kind"], restore["replica"], restore["state"]) == (
        "restore_endpoint",
        "checkout-0",
        "succeeded",
    )
    [action] = [a for a in SqlActionRepository(engine).list() if a.id == restore["id"]]
    assert f"probed {faulty.url} 8x: status " + ", ".join(["200"] * 8) in action.reason
    endpoints = httpx.get(f"{api}/api/v2/relaycore/endpoints", timeout=5).json()
    assert [e["drained"] for e in endpoints] == [False, False, False]


def test_react_on_arrival_detects_and_drains_the_faulty_replica_at_once(
    settings: ServingSettings, api_and_fleet: tuple[str, Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, running = api_and_fleet
    monkeypatch.setenv("HEALING_MODE", "auto")
    reset()
    engine = open_store(settings.database_url)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT, now=now))
    fault = {"kind": "errors", "rate": 1.0, "duration_s": 60}  # so its probes keep failing
    base = running.replicas("checkout")[0].base_url
    httpx.post(f"{base}/faults", json=fault, timeout=5).raise_for_status()
    found = react_on_arrival(["checkout"], now)
    assert "checkout-0" in {a["replica"] for a in found["new_anomalies"]}
    assert [(a["kind"], a["replica"], a["state"]) for a in found["actions"]] == [
        ("drain_endpoint", "checkout-0", "succeeded")
    ]
    # Nothing new arrived, and the drained replica's probes still fail: nothing to do.
    assert react_on_arrival(["checkout"], now) == {"new_anomalies": [], "actions": []}
    endpoints = httpx.get(f"{api}/api/v2/relaycore/endpoints", timeout=5).json()
    assert {e["name"] for e in endpoints if e["drained"]} == {"checkout-0"}


def test_the_ingestion_flow_scores_what_it_stored_drains_the_faulty_replica_and_alerts(
    settings: ServingSettings,
    api_and_fleet: tuple[str, Fleet],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    api, running = api_and_fleet
    monkeypatch.setenv("HEALING_MODE", "auto")
    reset()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = replica_rows(LATENCY_FAULT, now=now)
    recent = now - timedelta(minutes=4)  # the fault began six minutes ago: its last four ingested
    ingestion.store_batch(
        open_store(settings.database_url), [r for r in rows if r.timestamp < recent]
    )
    fault = {"kind": "errors", "rate": 1.0, "duration_s": 60}  # so its probes keep failing
    httpx.post(f"{running.replicas('checkout')[0].base_url}/faults", json=fault, timeout=5)
    path = tmp_path / "recent.csv"
    columns = ["service", "replica", "timestamp", *METRICS]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in (r for r in rows if r.timestamp >= recent):
            writer.writerow(
                [r.service, r.replica, r.timestamp.isoformat()] + [getattr(r, m) for m in METRICS]
            )

    result = ingest_flow(source="csv", csv_path=str(path), start=recent, end=now)
    reaction = result["reaction"]
    assert "checkout-0" in {a["replica"] for a in reaction["new_anomalies"]}
    assert [(a["kind"], a["replica"], a["state"]) for a in reaction["actions"]] == [
        ("drain_endpoint", "checkout-0", "succeeded")
    ]
    [drain] = SqlActionRepository(open_store(settings.database_url)).list()
    assert drain.started_by == "ingest-flow"
    alerts = httpx.get(f"{api}/api/v2/ai/alerts", timeout=5).json()["alerts"]
    firing = {(a["labels"]["alertname"], a["labels"].get("replica")) for a in alerts}
    assert {("ServiceAnomaly", "checkout-0"), ("HealingAction", "checkout-0")} <= firing
