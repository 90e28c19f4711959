"""Fixtures for the API: a registry built once per session and copied per test, the real app, RelayCore's app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from monitoring.config import reset
from monitoring.neuroweaver import registry
from serving.settings import ServingSettings
from tests.support.api import use_api_environment
from tests.support.live import LiveServer, serve
from tests.support.models import NAME, Registry, make_model, metric_rows, set_champion
from tests.support.relaycore import relay_environment


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("registry")
    db = root / "mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    x = metric_rows(200)
    client = MlflowClient()
    experiment = client.create_experiment(
        "serving-tests", artifact_location=(root / "artifacts").as_uri()
    )
    versions = []
    for seed, width in ((1, None), (2, None), (3, 32)):
        with mlflow.start_run(experiment_id=experiment):
            mlflow.log_metric("test_rmse", 0.1 * seed)
            versions.append(registry.register(make_model(x, seed, width), NAME, x))
    mlflow.set_tracking_uri(previous)
    yield Registry(db=db, good=(versions[0], versions[1]), corrupt=versions[2], example=x)


@pytest.fixture
def api_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_registry: Registry
) -> Iterator[ServingSettings]:
    """ServingSettings on a private copy of the registry and an empty metric store."""
    yield use_api_environment(tmp_path, monkeypatch, model_registry)
    reset()


@pytest.fixture
def champion(api_settings: ServingSettings, model_registry: Registry) -> str:
    """v1 is the champion before the app starts."""
    set_champion(model_registry.good[0])
    return model_registry.good[0]


@pytest.fixture
def client(champion: str) -> Iterator[TestClient]:
    from serving.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def live_server(champion: str) -> Iterator[LiveServer]:
    """The app on a real socket (uvicorn in a thread), for browsers and raw WebSocket clients."""
    from serving.app import create_app

    with serve(create_app()) as server:
        yield server


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow store, copied per test (creating one takes a second)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def relay_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path
) -> Iterator[Callable[..., object]]:
    """`relay_app(ENDPOINTS=..., API_KEY=..., queue_capacity=...)` -> a started TestClient."""
    clients: list[TestClient] = []

    def build(
        endpoints: dict[str, str] | None = None, api_key: str | None = None, **relaycore: object
    ) -> TestClient:
        from serving.app import create_app

        for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "RELAYCORE_ENDPOINTS", "RELAYCORE_POLICY"):
            monkeypatch.delenv(name, raising=False)
        for key, value in relay_environment(tmp_path, empty_mlflow_db, **relaycore).items():
            monkeypatch.setenv(key, value)
        if endpoints:
            monkeypatch.setenv(
                "RELAYCORE_ENDPOINTS", ",".join(f"{k}={v}" for k, v in endpoints.items())
            )
        if api_key:
            monkeypatch.setenv("API_KEY", api_key)
        reset()
        client = TestClient(create_app())
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)
    reset()
