"""`GET /api/v2/ai/alerts` on the real app: the alerts the on-demand cycle
(`POST /api/v2/ai/autonomous-optimization`) raises, and where each delivery stands per sink, with
a real HTTP receiver, a closed port and a real Alertmanager as the sinks."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from monitoring.config import reset
from serving.settings import ServingSettings
from tests.support.alertmanager import Receiver, active_alerts, alertmanager
from tests.support.net import free_port
from tests.support.stores import simulated_store

SERVICES = ("auth", "checkout")
AI = "/api/v2/ai"
# Every service needs scaling out (a 1% CPU target): the dry run previews one action each, and
# each previewed action is a HealingAction alert. A short first look-back keeps detection quick.
CYCLE_ENV = {
    "SCALING_TARGET_CPU": "1",
    "HEALING_WEBHOOK_URL": "http://127.0.0.1:9/scale",  # a dry run never calls it
    "DETECTOR_FIRST_LOOKBACK_HOURS": "1",
    "DETECTOR_WARMUP_HOURS": "6",
}
Client = Callable[[dict[str, str]], TestClient]


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A day of simulated samples up to now for two services."""
    path = tmp_path_factory.mktemp("alerts-api") / "seed.db"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    engine, _ = simulated_store(path, now - timedelta(days=1), now, SERVICES)
    engine.dispose()
    return path


@pytest.fixture
def app_with(
    champion: str,
    api_settings: ServingSettings,
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    """`app_with(env)`: the real app over a copy of the seeded store, with `env` set."""
    from serving.app import create_app

    clients: list[TestClient] = []
    for name in ("ALERTMANAGER_URL", "ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)

    def start(env: dict[str, str]) -> TestClient:
        shutil.copy(seeded_store, str(make_url(api_settings.database_url).database))
        for key, value in {**CYCLE_ENV, **env}.items():
            monkeypatch.setenv(key, value)
        reset()
        client = TestClient(create_app())
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)
    reset()


def _healing_alerts(client: TestClient, **params: str) -> list[dict]:
    """The listed HealingAction alerts: the simulated day may also hold an anomaly, whose alert
    these tests do not count."""
    listed = client.get(f"{AI}/alerts", params=params).json()["alerts"]
    return [a for a in listed if a["labels"]["alertname"] == "HealingAction"]


def _run_cycle(client: TestClient) -> list[dict]:
    body = client.post(f"{AI}/autonomous-optimization").json()
    assert {(a["service"], a["state"]) for a in body["actions"]} == {
        (s, "dry_run") for s in SERVICES
    }
    return list(body["actions"])


def test_on_demand_cycle_alerts_are_listed_delivered_to_the_webhook(app_with: Client) -> None:
    with Receiver() as receiver:
        client = app_with({"ALERT_WEBHOOK_URL": receiver.url})
        actions = _run_cycle(client)
        listed = _healing_alerts(client)
        sent = [a for body in receiver.bodies for a in body["alerts"]]
    assert sorted(a["labels"]["service"] for a in listed) == sorted(SERVICES)
    for alert in listed:
        assert alert["labels"]["severity"] == "info" and alert["status"] == "firing"
        assert alert["labels"]["action_id"] in {a["id"] for a in actions}
        [delivery] = alert["deliveries"]
        assert delivery["sink"] == "webhook" and delivery["state"] == "delivered"
        assert delivery["delivered_at"] is not None and delivery["last_error"] is None
    healing_sent = [a["fingerprint"] for a in sent if a["labels"]["alertname"] == "HealingAction"]
    assert sorted(healing_sent) == sorted(a["fingerprint"] for a in listed)


def test_alerts_a_down_sink_did_not_get_are_listed_as_failed_with_their_retry(
    app_with: Client,
) -> None:
    client = app_with({"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"})
    _run_cycle(client)
    failed = _healing_alerts(client, delivery="failed")
    assert len(failed) == 2
    for alert in failed:
        [delivery] = alert["deliveries"]
        assert delivery["state"] == "failed" and delivery["attempts"] == 1
        assert delivery["last_error"] and delivery["next_attempt_at"] is not None
    assert client.get(f"{AI}/alerts", params={"delivery": "delivered"}).json()["count"] == 0


def test_alerts_without_a_sink_are_recorded_and_listed_with_no_delivery(
    app_with: Client,
) -> None:
    client = app_with({})
    _run_cycle(client)
    listed = _healing_alerts(client)
    assert len(listed) == 2 and all(a["deliveries"] == [] for a in listed)
    assert client.get(f"{AI}/alerts", params={"limit": 1}).json()["count"] == 1


@pytest.mark.parametrize("params", [{"delivery": "lost"}, {"limit": 0}, {"limit": 1001}])
def test_get_alerts_bad_filter_is_422(app_with: Client, params: dict) -> None:
    assert app_with({}).get(f"{AI}/alerts", params=params).status_code == 422


@pytest.mark.slow
def test_on_demand_cycle_alerts_reach_a_real_alertmanager(app_with: Client, tmp_path: Path) -> None:
    with alertmanager(tmp_path / "am") as url:
        client = app_with({"ALERTMANAGER_URL": url})
        _run_cycle(client)
        found = active_alerts(url, alertname="HealingAction")
        listed = _healing_alerts(client)
    assert sorted(a["labels"]["service"] for a in found) == sorted(SERVICES)
    assert all(a["labels"]["severity"] == "info" for a in found)
    states = [(d["sink"], d["state"]) for a in listed for d in a["deliveries"]]
    assert states == [("alertmanager", "delivered")] * 2
