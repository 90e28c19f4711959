"""Predictions from the champion: one sample, batches, and the refusals."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from monitoring.config import reset
from tests.support.models import SAMPLE

PREDICT = "/api/v2/neuroweaver/predict"


def test_predict_one_sample_returns_score_and_version(client: TestClient, champion: str) -> None:
    response = client.post(PREDICT, json=SAMPLE)
    assert response.status_code == 200
    body = response.json()
    assert 0.0 <= body["performance_score"] <= 1.0
    assert (body["model_name"], body["model_version"], body["model_alias"]) == (
        "neuroweaver",
        champion,
        "champion",
    )


def test_predict_batch_returns_one_score_per_instance(client: TestClient) -> None:
    instances = [SAMPLE, {**SAMPLE, "cpu_usage": 10.0}, {**SAMPLE, "error_rate": 0.0}]
    response = client.post(PREDICT, json={"instances": instances})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    scores = [p["performance_score"] for p in body["predictions"]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    single = client.post(PREDICT, json=SAMPLE).json()["performance_score"]
    assert math.isclose(scores[0], single, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**SAMPLE, "cpu_usage": 150.0}, "cpu_usage=150.0 is outside [0, 100]"),
        ({k: v for k, v in SAMPLE.items() if k != "error_rate"}, "error_rate is missing"),
        ({**SAMPLE, "memory_usage": "high"}, "memory_usage must be a number"),
        ({**SAMPLE, "request_count": -1}, "request_count=-1 is outside"),
        ({**SAMPLE, "cpu_usage": True}, "cpu_usage must be a number"),
        ({**SAMPLE, "cpu_usage": None}, "cpu_usage is missing"),
        (
            {"instances": [SAMPLE, {**SAMPLE, "network_latency": -5}]},
            "instance 1: network_latency=-5",
        ),
        ({"instances": []}, "non-empty list"),
    ],
)
def test_predict_invalid_sample_is_422_with_reason(
    client: TestClient, body: dict, reason: str
) -> None:
    response = client.post(PREDICT, json=body)
    assert response.status_code == 422
    assert reason in response.json()["detail"]


def test_predict_nan_is_422(client: TestClient) -> None:
    text = '{"cpu_usage": NaN, "memory_usage": 1, "network_latency": 1, "error_rate": 1, "request_count": 1}'
    response = client.post(PREDICT, content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


def test_predict_batch_over_the_limit_is_413(
    api_settings, champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.app import create_app

    monkeypatch.setenv("MAX_BATCH_ROWS", "5")
    reset()
    with TestClient(create_app()) as limited:
        response = limited.post(PREDICT, json={"instances": [SAMPLE] * 6})
    assert response.status_code == 413
    assert "limit of 5" in response.json()["detail"]


def test_predict_body_over_the_limit_is_413(
    api_settings, champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.app import create_app

    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    reset()
    with TestClient(create_app()) as limited:
        announced = limited.post(PREDICT, json={"instances": [SAMPLE] * 20})
        streamed = limited.post(
            PREDICT,
            content=iter([b'{"instances": [' + b" " * 800, b" " * 800 + b"]}"]),
            headers={"content-type": "application/json"},
        )
    assert announced.status_code == 413
    assert streamed.status_code == 413
    assert "1000 bytes" in streamed.json()["detail"]


def test_predict_without_model_is_503_with_reason(api_settings) -> None:
    from serving.app import create_app

    with TestClient(create_app()) as no_model:
        response = no_model.post(PREDICT, json=SAMPLE)
        ready = no_model.get("/ready")
    assert response.status_code == 503
    assert "no version of 'neuroweaver' has the alias @champion" in response.json()["detail"]
    assert ready.status_code == 503
    assert not ready.json()["ready"]


def test_the_documented_route_answers_exactly_as_the_fast_path(
    client: TestClient, champion: str
) -> None:
    from serving.app import create_app
    from serving.neuroweaver.predict import PredictPath

    routed_app = create_app()
    routed_app.user_middleware = [m for m in routed_app.user_middleware if m.cls is not PredictPath]
    with TestClient(routed_app) as routed:
        for body in (
            SAMPLE,
            {"instances": [SAMPLE, {**SAMPLE, "cpu_usage": 1.0}]},
            {**SAMPLE, "cpu_usage": -1},
        ):
            fast, slow = client.post(PREDICT, json=body), routed.post(PREDICT, json=body)
            assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())


def test_predict_carries_the_request_id_and_other_methods_reach_the_router(
    client: TestClient,
) -> None:
    answered = client.post(PREDICT, json=SAMPLE, headers={"X-Request-ID": "trace-42"})
    assert answered.headers["x-request-id"] == "trace-42"
    assert client.get(PREDICT).status_code == 405
