"""The AI Orchestrator's endpoints on the real app, over a store of simulated services."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from monitoring.config import OrchestratorSettings, reset
from monitoring.healing.actions import Action, ActionKind, ActionState
from monitoring.orchestrator import cycle as orchestrator
from monitoring.store.engine import make_engine
from monitoring.store.orchestrator import SqlActionRepository, utcnow
from serving.settings import ServingSettings
from tests.support.models import NAME, Registry, set_champion
from tests.support.polling import wait_for
from tests.support.stores import simulated_store

SERVICES = ("auth", "checkout")
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
AI = "/api/v2/ai"


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated days up to now, with the anomalies of the last day detected."""
    path = tmp_path_factory.mktemp("ai") / "seed.db"
    engine, _ = simulated_store(path, NOW - timedelta(days=3), NOW, SERVICES)
    orchestrator.detect_all(engine, SERVICES, NOW, OrchestratorSettings())
    engine.dispose()
    return path


def _client(
    api_settings: ServingSettings,
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
) -> Iterator[TestClient]:
    from serving.app import create_app

    shutil.copy(seeded_store, str(make_url(api_settings.database_url).database))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset()
    with TestClient(create_app()) as test_client:
        yield test_client
    reset()


@pytest.fixture
def ai(
    champion: str,
    api_settings: ServingSettings,
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    yield from _client(api_settings, seeded_store, monkeypatch, {})


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers["Content-Length"])
        Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/scale"
    server.shutdown()


@pytest.fixture
def scaling_ai(
    champion: str,
    api_settings: ServingSettings,
    seeded_store: Path,
    webhook: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    """Every service needs scaling out (a 1% CPU target), and a webhook receives it."""
    env = {"HEALING_WEBHOOK_URL": webhook, "SCALING_TARGET_CPU": "1"}
    yield from _client(api_settings, seeded_store, monkeypatch, env)


def engine_of(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.automatrix.engine()  # type: ignore[attr-defined]


def add_action(
    client: TestClient,
    kind: ActionKind,
    params: dict,
    state: ActionState,
    undo: str | None = "undo it",
) -> str:
    action = Action(
        id=f"test-{kind}-{state}",
        kind=kind,
        service="checkout",
        target="t",
        reason="test",
        created_at=utcnow(),
        params=params,
        state=state,
        undo=undo,
    )
    SqlActionRepository(engine_of(client)).add(action)
    return action.id


# --- anomalies ----------------------------------------------------------------------------


def test_get_anomalies_filters_by_service_and_severity(ai: TestClient) -> None:
    everything = ai.get(f"{AI}/anomalies").json()
    assert everything["count"] > 0
    auth = ai.get(f"{AI}/anomalies", params={"service": "auth"}).json()["anomalies"]
    assert {a["service"] for a in auth} <= {"auth"}
    critical = ai.get(f"{AI}/anomalies", params={"min_severity": "critical"}).json()["anomalies"]
    assert all(a["score"] >= 0.995 and a["severity"] == "critical" for a in critical)
    first = everything["anomalies"][0]
    assert first["metrics"] and first["start"] <= first["end"]
    # The simulator's services have no replicas: every anomaly is a service's own.
    assert {a["replica"] for a in everything["anomalies"]} == {None}


def test_get_anomalies_time_range_keeps_overlapping_ones(ai: TestClient) -> None:
    start = (NOW - timedelta(hours=6)).isoformat()
    found = ai.get(f"{AI}/anomalies", params={"start": start}).json()["anomalies"]
    assert all(datetime.fromisoformat(a["end"]) >= NOW - timedelta(hours=6) for a in found)


def test_get_anomalies_unknown_service_is_404(ai: TestClient) -> None:
    assert ai.get(f"{AI}/anomalies", params={"service": "nope"}).status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"min_severity": "huge"},
        {"start": "yesterday"},
        {"limit": 0},
        {"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"},
    ],
)
def test_get_anomalies_bad_filter_is_422(ai: TestClient, params: dict) -> None:
    response = ai.get(f"{AI}/anomalies", params=params)
    assert response.status_code == 422 and response.json()["detail"]


def test_publish_anomaly_stored_after_start_on_the_hub(ai: TestClient) -> None:
    from sqlalchemy.orm import Session

    from monitoring.store.tables import AnomalyRow

    with Session(engine_of(ai)) as session, session.begin():
        session.add(
            AnomalyRow(
                service="auth",
                metrics=["cpu_usage"],
                start=NOW,
                end=NOW,
                score=0.99,
                severity="high",
                state="open",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    hub = ai.app.state.automatrix.hub  # type: ignore[attr-defined]
    wait_for(lambda: any(a["start"] == NOW.isoformat() for a in hub.recent("anomaly")))


# --- capacity and insights ----------------------------------------------------------------


def test_get_capacity_returns_intervals_and_crossing(ai: TestClient) -> None:
    response = ai.get(
        f"{AI}/predictive/capacity",
        params={"service": "checkout", "metric": "cpu_usage", "horizon": 120, "threshold": 0.5},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert len(body["points"]) == 24 and body["step_minutes"] == 5
    point = body["points"][0]
    assert point["lower"]["95"] <= point["lower"]["80"] <= point["mean"] <= point["upper"]["80"]
    assert body["crossing"]["expected_at"] is not None  # 0.5% CPU is below any forecast


@pytest.mark.parametrize(
    "params", [{"metric": "disk"}, {"horizon": 0}, {"horizon": "soon"}, {"threshold": "nan"}]
)
def test_get_capacity_bad_metric_or_horizon_is_422(ai: TestClient, params: dict) -> None:
    response = ai.get(f"{AI}/predictive/capacity", params={"service": "checkout", **params})
    assert response.status_code == 422


def test_get_capacity_unknown_service_is_404(ai: TestClient) -> None:
    assert ai.get(f"{AI}/predictive/capacity", params={"service": "nope"}).status_code == 404


def push_short_history(client: TestClient, service: str = "newbie") -> None:
    samples = [
        {
            "service": service,
            "timestamp": (NOW - timedelta(minutes=i)).isoformat(),
            "cpu_usage": 40.0,
            "memory_usage": 50.0,
            "network_latency": 80.0,
            "error_rate": 0.1,
            "request_count": 900.0,
        }
        for i in range(30)
    ]
    assert client.post("/api/v2/metrics", json={"samples": samples}).status_code in (200, 202)


def test_get_capacity_short_history_is_409_saying_so(ai: TestClient) -> None:
    push_short_history(ai)
    response = ai.get(f"{AI}/predictive/capacity", params={"service": "newbie"})
    assert response.status_code == 409
    assert "too little history" in response.json()["detail"]


def test_get_insights_gives_every_part(ai: TestClient) -> None:
    body = ai.get(f"{AI}/insights/checkout").json()
    assert body["enough_history"] and body["problems"] == []
    assert set(body["health"]) >= {"cpu_usage", "error_rate"}
    assert 0 <= body["predicted_score"] <= 1 and body["model_version"]
    assert 0 <= body["failure_risk"]["risk"] <= 1 and body["failure_risk"]["factors"]
    assert body["capacity"]["points"] and body["scaling"]["reasons"]
    assert isinstance(body["open_anomalies"], list) and isinstance(body["recent_actions"], list)


def test_get_insights_short_history_says_so(ai: TestClient) -> None:
    push_short_history(ai)
    body = ai.get(f"{AI}/insights/newbie").json()
    assert not body["enough_history"]
    assert any("forecast" in p for p in body["problems"]) and body["capacity"] is None


def test_get_insights_unknown_service_is_404(ai: TestClient) -> None:
    assert ai.get(f"{AI}/insights/nope").status_code == 404


# --- decisions, modes, approval and rollback ----------------------------------------------


def test_post_autonomous_optimization_defaults_to_dry_run(scaling_ai: TestClient) -> None:
    body = scaling_ai.post(f"{AI}/autonomous-optimization").json()
    assert body["mode"] == "dry_run"
    assert {a["service"] for a in body["actions"]} == set(SERVICES)
    assert all(a["state"] == "dry_run" and a["kind"] == "scaling_webhook" for a in body["actions"])
    assert all(s["scaling"]["direction"] == "out" for s in body["services"])
    assert Hook.received == []


def test_post_autonomous_optimization_auto_calls_webhook_then_rate_limits(
    scaling_ai: TestClient,
) -> None:
    first = scaling_ai.post(f"{AI}/autonomous-optimization", json={"mode": "auto"}).json()
    assert [a["state"] for a in first["actions"]] == ["succeeded", "succeeded"]
    assert {r["service"] for r in Hook.received} == set(SERVICES)
    again = scaling_ai.post(f"{AI}/autonomous-optimization", json={"mode": "auto"}).json()
    assert [a["state"] for a in again["actions"]] == ["rate_limited", "rate_limited"]


def test_post_autonomous_optimization_off_records_nothing(scaling_ai: TestClient) -> None:
    body = scaling_ai.post(f"{AI}/autonomous-optimization", json={"mode": "off"}).json()
    assert body["actions"] == [] and scaling_ai.get(f"{AI}/actions").json()["count"] == 0


def test_post_autonomous_optimization_bad_mode_is_422(ai: TestClient) -> None:
    assert ai.post(f"{AI}/autonomous-optimization", json={"mode": "yolo"}).status_code == 422


def test_post_autonomous_optimization_needs_api_key_when_set(
    ai: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    ai.app.state.automatrix.settings.api_key = SecretStr("k")  # type: ignore[attr-defined]
    assert ai.post(f"{AI}/autonomous-optimization").status_code == 401
    ok = ai.post(f"{AI}/autonomous-optimization", headers={"X-API-Key": "k"})
    assert ok.status_code == 200


def test_approve_confirm_mode_action_calls_webhook(scaling_ai: TestClient) -> None:
    body = scaling_ai.post(f"{AI}/autonomous-optimization", json={"mode": "confirm"}).json()
    pending = [a for a in body["actions"] if a["state"] == "pending"]
    assert len(pending) == 2 and Hook.received == []
    approved = scaling_ai.post(f"{AI}/actions/{pending[0]['id']}/approve", json={"by": "alice"})
    assert approved.json()["state"] == "succeeded" and approved.json()["approved_by"] == "alice"
    assert len(Hook.received) == 1
    again = scaling_ai.post(f"{AI}/actions/{pending[0]['id']}/approve")
    assert again.status_code == 409


def test_approve_unknown_action_is_404(ai: TestClient) -> None:
    assert ai.post(f"{AI}/actions/nope/approve").status_code == 404
    assert ai.post(f"{AI}/actions/nope/rollback").status_code == 404


def test_rollback_drain_undrains_endpoint_in_relaycore(ai: TestClient) -> None:
    relay = "/api/v2/relaycore/endpoints"
    ai.post(relay, json={"name": "e1", "url": "http://127.0.0.1:9/e1", "service": "checkout"})
    action_id = add_action(ai, ActionKind.DRAIN_ENDPOINT, {"endpoint": "e1"}, ActionState.PENDING)
    drained = ai.post(f"{AI}/actions/{action_id}/approve").json()
    assert drained["state"] == "succeeded" and drained["params"]["url"] == "http://127.0.0.1:9/e1"
    assert drained["replica"] == "e1"
    # Drained, it stays registered (so it can be probed and restored) and gets no traffic.
    assert [(e["name"], e["drained"]) for e in ai.get(relay).json()] == [("e1", True)]
    undo = ai.post(f"{AI}/actions/{action_id}/rollback").json()
    assert undo["kind"] == "restore_endpoint" and undo["state"] == "succeeded"
    assert [(e["name"], e["drained"]) for e in ai.get(relay).json()] == [("e1", False)]
    listed = {a["id"]: a for a in ai.get(f"{AI}/actions").json()["actions"]}
    assert (
        listed[action_id]["state"] == "rolled_back" and listed[undo["id"]]["undo_of"] == action_id
    )
    assert ai.post(f"{AI}/actions/{action_id}/rollback").status_code == 409


def test_approve_rollback_champion_moves_alias_back(
    ai: TestClient, model_registry: Registry
) -> None:
    v1, v2 = model_registry.good
    set_champion(v2)
    params = {"model": NAME, "alias": "champion", "from_version": v2, "to_version": v1}
    action_id = add_action(ai, ActionKind.ROLLBACK_CHAMPION, params, ActionState.PENDING)
    done = ai.post(f"{AI}/actions/{action_id}/approve").json()
    assert done["state"] == "succeeded", done
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) == v1
    undo = ai.post(f"{AI}/actions/{action_id}/rollback").json()
    assert undo["state"] == "succeeded"
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) == v2


def test_approve_failing_command_is_recorded_failed(ai: TestClient) -> None:
    params = {"argv": ["rm", "-rf", "/"], "undo_argv": []}
    action_id = add_action(ai, ActionKind.RUN_COMMAND, params, ActionState.PENDING)
    done = ai.post(f"{AI}/actions/{action_id}/approve").json()
    assert done["state"] == "failed" and "not a configured command" in done["result"]
    assert ai.post(f"{AI}/actions/{action_id}/rollback").status_code == 409


def test_get_actions_filters_by_state(ai: TestClient) -> None:
    add_action(ai, ActionKind.RUN_COMMAND, {"argv": ["true"]}, ActionState.PENDING)
    add_action(ai, ActionKind.RUN_COMMAND, {"argv": ["true"]}, ActionState.DRY_RUN)
    found = ai.get(f"{AI}/actions", params={"state": "pending"}).json()["actions"]
    assert [a["state"] for a in found] == ["pending"]
    assert ai.get(f"{AI}/actions", params={"state": "weird"}).status_code == 422


def test_get_insights_cost_of_current_and_recommended_size(
    champion: str,
    api_settings: ServingSettings,
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"SCALING_PRICE_PER_REPLICA_HOUR": "0.5", "SCALING_REPLICAS": "checkout=4"}
    for client in _client(api_settings, seeded_store, monkeypatch, env):
        body = client.get(f"{AI}/insights/checkout").json()
        cost, desired = body["cost"], body["scaling"]["desired_replicas"]
        assert cost["price_per_replica_hour"] == 0.5 and cost["hours_per_month"] == 730
        assert cost["current_monthly"] == 4 * 0.5 * 730
        assert cost["recommended_monthly"] == desired * 0.5 * 730
        assert cost["monthly_saving"] == cost["current_monthly"] - cost["recommended_monthly"]


def test_get_insights_cost_is_null_without_a_price(ai: TestClient) -> None:
    body = ai.get(f"{AI}/insights/checkout").json()
    assert body["cost"] is None and body["scaling"] is not None


def test_get_capacity_answers_with_the_champion_forecasters_choice_for_the_series(
    champion: str,
    api_settings: ServingSettings,
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import dataclasses

    import mlflow

    from monitoring.assess import capacity_model
    from monitoring.assess.forecasting import choose
    from monitoring.assess.insights import frame_of
    from monitoring.neuroweaver import registry
    from monitoring.store.metrics import read_samples

    with Session(make_engine(f"sqlite:///{seeded_store}")) as session:
        samples = read_samples(session, services=["checkout"])
    series = capacity_model.series_of(frame_of(samples), "cpu_usage")
    # An unusual choice, so that the answer shows it was read rather than chosen afresh.
    chosen = dataclasses.replace(choose(series, 24), method="ets", weights={"ets": 1.0})
    state = capacity_model.FittedForecaster({"checkout/cpu_usage": chosen}, 24, NOW.isoformat())
    mlflow.set_tracking_uri(api_settings.mlflow_tracking_uri)
    experiment = mlflow.create_experiment("capacity", (tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        version = registry.register_state(
            capacity_model.MODEL_NAME,
            state.to_dict(),
            Path(capacity_model.__file__).with_name("capacity_pyfunc.py"),
            capacity_model.STATE_FILE,
        )
    registry.record_decision(capacity_model.MODEL_NAME, version, True, {})
    for client in _client(api_settings, seeded_store, monkeypatch, {}):
        fitted = client.get(f"{AI}/predictive/capacity", params={"service": "checkout"}).json()
        fresh = client.get(
            f"{AI}/predictive/capacity", params={"service": "checkout", "metric": "memory_usage"}
        ).json()
    assert fitted["fitted_version"] == version and fitted["model"] == "ets"
    assert fresh["fitted_version"] is None  # no choice for that series: chosen on the spot
