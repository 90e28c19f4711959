"""Health, readiness, ingestion by push, ecosystem status, analytics, Prometheus and the docs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from monitoring.store.metrics import read_samples, replica_names
from tests.support.models import SAMPLE


def sample_rows(
    service: str, minutes: int, start: datetime | None = None, **overrides: float
) -> list[dict]:
    start = start or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    return [
        {
            "service": service,
            "timestamp": (start + timedelta(minutes=i)).isoformat(),
            **SAMPLE,
            **overrides,
        }
        for i in range(minutes)
    ]


def test_health_answers_ok(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"


def test_ready_with_model_and_store_is_200(client: TestClient, champion: str) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "model_version": champion, "reasons": []}


def test_push_metrics_stores_valid_rows_and_reports_rejected(client: TestClient) -> None:
    rows = sample_rows("checkout", 3)
    rows.append({**rows[0], "cpu_usage": -1.0})
    rows.append({"service": "checkout", "timestamp": rows[0]["timestamp"]})
    response = client.post("/api/v2/metrics", json={"samples": rows})
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    assert body["reasons"][0].startswith("row 3: cpu_usage=-1.0 is outside")
    again = client.post("/api/v2/metrics", json={"samples": rows[:3]}).json()
    assert again["accepted"] == 3
    status = client.get("/api/v2/ecosystem/status").json()
    assert status["components"]["store"]["services"] == 1


def test_pushed_replica_readings_are_stored_apart_and_charted_as_their_service(
    client: TestClient,
) -> None:
    rows = [
        {**row, "replica": f"search-{i}", "request_count": 100.0 * (i + 1)}
        for i in range(2)
        for row in sample_rows("search", 3)
    ]
    assert client.post("/api/v2/metrics", json={"samples": rows}).json()["accepted"] == 6
    series = client.get("/api/v2/ecosystem/live").json()["payload"]["series"]
    assert set(series) == {"search"} and series["search"]["request_count"] == [300.0] * 3
    engine = client.app.state.automatrix.engine()  # type: ignore[attr-defined]
    with Session(engine) as session:
        assert replica_names(session, "search") == ["search-0", "search-1"]
        assert [s.request_count for s in read_samples(session, replica="search-1")] == [200.0] * 3


def test_push_metrics_all_rejected_is_422_with_reasons(client: TestClient) -> None:
    response = client.post("/api/v2/metrics", json={"samples": [{"service": "x"}]})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "every sample was rejected; nothing was stored"
    assert body["reasons"] == ["row 0: timestamp is missing"]


def test_push_metrics_without_samples_field_is_422(client: TestClient) -> None:
    response = client.post("/api/v2/metrics", json={"rows": []})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("samples: Field required")


def test_ecosystem_status_reports_every_component(client: TestClient, champion: str) -> None:
    state = client.app.state.automatrix  # type: ignore[attr-defined]
    state.register_component("relaycore", lambda: {"status": "stopped", "endpoints": 0})
    overview = client.get("/api/v2/ecosystem/status").json()
    assert overview["status"] == "ok" and overview["model_version"] == champion
    assert overview["last_training"] is None and overview["last_ingestion"] is None
    components = client.get("/ai-ecosystem/status").json()["components"]
    assert {"api", "model", "store", "training", "live_feed", "relaycore"} <= set(components)
    assert components["relaycore"]["status"] == "stopped"


def test_live_snapshot_holds_series_of_pushed_samples(client: TestClient) -> None:
    client.post("/api/v2/metrics", json={"samples": sample_rows("search", 5)})
    body = client.get("/api/v2/ecosystem/live").json()
    assert body["type"] == "snapshot"
    assert len(body["payload"]["series"]["search"]["cpu_usage"]) == 5


def test_analytics_reports_latency_counts_and_model_error(
    client: TestClient, champion: str
) -> None:
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    client.post(
        "/api/v2/metrics",
        json={"samples": sample_rows("api", 20, start, network_latency=100.0, error_rate=0.5)},
    )
    keyed = [
        {**SAMPLE, "service": "api", "timestamp": (start + timedelta(minutes=i)).isoformat()}
        for i in range(10)
    ]
    for _ in range(3):
        assert (
            client.post("/api/v2/neuroweaver/predict", json={"instances": keyed}).status_code == 200
        )
    body = client.get("/api/v2/analytics/performance").json()
    endpoint = next(e for e in body["endpoints"] if e["endpoint"] == "/api/v2/neuroweaver/predict")
    assert endpoint["requests"] == 3 and endpoint["latency_ms"]["p99"] > 0
    assert body["predictions"]["rows"] == 30 and body["predictions"]["by_version"] == {champion: 30}
    error = body["model_error"]
    assert error["compared"] == 30  # every minute's next five are good, so the truth is 1.0
    assert 0 <= error["mae"] <= 1 and error["by_version"][champion]["compared"] == 30


def test_prometheus_metrics_expose_requests_and_model(client: TestClient, champion: str) -> None:
    client.post("/api/v2/neuroweaver/predict", json=SAMPLE)
    text = client.get("/metrics").text
    assert (
        'automatrix_http_requests_total{method="POST",route="/api/v2/neuroweaver/predict",status="200"} 1.0'
        in text
    )
    assert f"automatrix_model_version {float(champion)}" in text


def test_docs_list_every_endpoint_with_examples(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/v2/neuroweaver/predict",
        "/api/v2/neuroweaver/train",
        "/api/v2/metrics",
        "/api/v2/ecosystem/live",
        "/api/v2/analytics/performance",
        "/ready",
    ):
        assert path in schema["paths"], path
    predict = schema["paths"]["/api/v2/neuroweaver/predict"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    assert predict["examples"]["one sample"]["value"]["cpu_usage"] == 85.0
    assert "PredictionInstance" in schema["components"]["schemas"]


def test_unknown_path_is_json_404(client: TestClient) -> None:
    response = client.get("/api/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
