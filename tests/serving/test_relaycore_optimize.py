"""Tuning the adaptive policy through the API, and the transport's limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow import MlflowClient

from tests.support.relaycore import Backend

MESSAGE = "/api/v2/relaycore/message"


def test_optimize_without_observations_returns_409(relay_app: Callable[..., Any]) -> None:
    client = relay_app()
    response = client.post("/api/v2/relaycore/optimize", json={"trials": 2})
    assert response.status_code == 409
    assert "nothing to replay" in response.json()["detail"]


def test_optimize_after_traffic_logs_trials_and_reports_before_and_after(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    fast, slow = backends("fast", delay_ms=2), backends("slow", delay_ms=15)
    client = relay_app(endpoints={"fast": fast.url, "slow": slow.url})
    for i in range(60):
        assert client.post(MESSAGE, json={"payload": {"id": i}}).status_code == 200
    response = client.post("/api/v2/relaycore/optimize", json={"trials": 4, "timeout_s": 30})
    assert response.status_code == 200
    found = response.json()
    assert found["trials"] == 4 and found["policy"] == "adaptive"
    for figures in (found["before"], found["after"]):
        assert figures["success_rate"] == 1.0 and figures["p99_ms"] >= figures["p50_ms"] > 0
    assert found["after"]["p99_ms"] <= found["before"]["p99_ms"]
    mlflow = MlflowClient(tracking_uri=client.app.state.automatrix.settings.mlflow_tracking_uri)
    parent = mlflow.get_run(found["mlflow_run_id"])
    assert "before_p99_ms" in parent.data.metrics and "after_p99_ms" in parent.data.metrics
    children = mlflow.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    status = client.get("/api/v2/relaycore/status").json()
    assert status["last_optimization"]["mlflow_run_id"] == found["mlflow_run_id"]
    assert status["last_optimization"]["version"] == found["version"]


def test_optimize_registers_the_knobs_with_the_judgement_on_calls_the_search_never_saw(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    fast, slow = backends("fast", delay_ms=2), backends("slow", delay_ms=15)
    client = relay_app(endpoints={"fast": fast.url, "slow": slow.url})
    for i in range(60):
        assert client.post(MESSAGE, json={"payload": {"id": i}}).status_code == 200
    observed = client.get("/api/v2/relaycore/observations").json()["observations"]
    assert len(observed) == 60 and {o["endpoint"] for o in observed} == {"fast", "slow"}
    found = client.post("/api/v2/relaycore/optimize", json={"trials": 2}).json()
    registry = MlflowClient(tracking_uri=client.app.state.automatrix.settings.mlflow_tracking_uri)
    version = registry.get_model_version("relaycore-policy", found["version"])
    assert version.tags["promotion.reason"] == found["reason"]
    assert ("champion" in version.aliases) == found["promoted"]
    run = registry.get_run(found["mlflow_run_id"])
    assert (run.data.params["search_calls"], run.data.params["validation_calls"]) == ("42", "18")
    policy_model = client.get("/api/v2/relaycore/status").json()["policy_model"]
    assert policy_model["version"] == (found["version"] if found["promoted"] else None)


def test_send_message_with_oversized_answer_returns_502(
    relay_app: Callable[..., Any], backends: Callable[..., Backend]
) -> None:
    client = relay_app(endpoints={"a": backends("a").url}, max_response_bytes=8)
    response = client.post(MESSAGE, json={"payload": {"id": 1}})
    assert response.status_code == 502
    assert "ResponseTooLarge" in response.json()["detail"]
