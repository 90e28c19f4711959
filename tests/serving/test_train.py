"""Training through the API: a real Prefect flow run, its progress, and the refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from monitoring.config import reset
from tests.support.models import metric_rows
from tests.support.polling import wait_for

TRAIN = "/api/v2/neuroweaver/train"
METRICS = ("cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count")


def labelled_rows(n: int = 120) -> list[dict[str, float]]:
    x = metric_rows(n, seed=5)
    y = np.clip(1 - x[:, 3] / 100, 0, 1)
    return [
        {**dict(zip(METRICS, row.tolist(), strict=True)), "performance_score": float(t)}
        for row, t in zip(x, y, strict=True)
    ]


def flow_run_state(flow_run_id: str) -> str | None:
    from prefect.client.orchestration import get_client

    async def read() -> str | None:
        async with get_client() as prefect:
            return (await prefect.read_flow_run(flow_run_id)).state_name

    return asyncio.run(read())


@pytest.fixture
def prefect_client(prefect_harness: None, client: TestClient) -> Iterator[TestClient]:
    yield client


@pytest.mark.slow
def test_train_with_data_starts_a_real_prefect_flow_run(prefect_client: TestClient) -> None:
    body = {"data": labelled_rows(), "trials": 1, "max_epochs": 1, "timeout_s": 60}
    response = prefect_client.post(TRAIN, json=body)
    assert response.status_code == 202
    started = response.json()
    run_id = started["flow_run_id"]
    assert started["prefect_ui_url"] == f"http://127.0.0.1:4200/runs/flow-run/{run_id}"
    assert started["deployment"] is None  # no deployment on this Prefect server: run in-process
    wait_for(
        lambda: flow_run_state(run_id) in ("Completed", "Failed", "Crashed"),
        timeout=90,
        interval=0.5,
    )
    assert flow_run_state(run_id) == "Completed"
    status = prefect_client.get("/api/v2/neuroweaver/status").json()
    run = next(r for r in status["runs"] if r["flow_run_id"] == run_id)
    assert run["state"] == "COMPLETED" and run["trial"] >= 0 and run["best_loss"] is not None
    assert run["model_version"] == "4"
    versions = prefect_client.get("/api/v2/neuroweaver/models").json()["versions"]
    assert any(v["version"] == "4" and "promotion.reason" in v["tags"] for v in versions)


def test_train_when_disabled_is_403(champion: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.app import create_app

    monkeypatch.setenv("ENABLE_ML_TRAINING", "false")
    reset()
    with TestClient(create_app()) as client:
        response = client.post(TRAIN)
    assert response.status_code == 403
    assert "ENABLE_ML_TRAINING=false" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"trials": 0}, "trials: Input should be greater than or equal to 1"),
        ({"data": labelled_rows(10)}, "data: List should have at least 50 items"),
        (
            {"data": [{**r, "performance_score": 2.0} for r in labelled_rows(60)]},
            "data.0.performance_score",
        ),
        ({"epochs": 3}, "epochs: Extra inputs are not permitted"),
    ],
)
def test_train_invalid_body_is_422(client: TestClient, body: dict, reason: str) -> None:
    response = client.post(TRAIN, json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(reason)


def test_training_status_lists_no_runs_on_a_fresh_store(client: TestClient) -> None:
    assert client.get("/api/v2/neuroweaver/status").json() == {
        "enabled": True,
        "running": 0,
        "runs": [],
    }


def _with_deployment(action: str, deployment_id: object = None) -> object:
    from prefect.client.orchestration import get_client

    from flows.train import train_flow

    async def run() -> object:
        if action == "create":
            return await (await train_flow.ato_deployment(name="daily")).apply()
        async with get_client() as prefect:
            await prefect.delete_deployment(deployment_id)
        return None

    return asyncio.run(run())


@pytest.mark.slow
def test_train_with_deployment_schedules_a_run_for_its_worker(prefect_client: TestClient) -> None:
    deployment_id = _with_deployment("create")
    try:
        response = prefect_client.post(TRAIN, json={"trials": 2})
        assert response.status_code == 202
        started = response.json()
        assert started["deployment"] == "neuroweaver-train/daily"
        assert flow_run_state(started["flow_run_id"]) == "Scheduled"  # no worker here to pick it up
    finally:
        _with_deployment("delete", deployment_id)
