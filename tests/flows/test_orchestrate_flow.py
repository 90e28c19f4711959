"""The orchestration flow end to end: simulated incidents in, anomalies and decisions out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.ingest import ingest_flow
from flows.orchestrate import orchestrate_flow
from monitoring.config import reset
from monitoring.store.engine import open_store
from monitoring.store.orchestrator import AnomalyFilter, SqlActionRepository, find_anomalies
from monitoring.store.tables import Incident
from serving.settings import ServingSettings

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
