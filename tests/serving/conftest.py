"""Fixtures for the API: a registry built once per session, copied per test, and the real app."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from monitoring.neuroweaver import registry
from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel, build_network
from monitoring.samples import BOUNDS, METRICS
from serving.settings import Settings, get_settings

NAME = "neuroweaver"
SAMPLE = {
    "cpu_usage": 85.0,
    "memory_usage": 70.0,
    "network_latency": 200.0,
    "error_rate": 3.0,
    "request_count": 2000.0,
}


@dataclass(frozen=True)
class Registry:
    """The session's registry: v1 and v2 are good (and answer differently), v3 cannot load."""

    db: Path
    good: tuple[str, str]
    corrupt: str
    example: np.ndarray


def metric_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    highs = {"network_latency": 2000.0, "request_count": 50_000.0}
    return np.column_stack(
        [rng.uniform(BOUNDS[m][0], highs.get(m, BOUNDS[m][1]), n) for m in METRICS]
    )


def make_model(x: np.ndarray, seed: int, config_width: int | None = None) -> NeuroWeaverModel:
    """A small untrained model; `config_width` different from 64 makes its saved form unloadable."""
    torch.manual_seed(seed)
    network = build_network(Architecture(width=64))
    return NeuroWeaverModel(Architecture(width=config_width or 64), FeaturePipeline.fit(x), network)


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
) -> Iterator[Settings]:
    """Settings on a private copy of the registry (so aliases can move) and an empty metric store."""
    shutil.copy(model_registry.db, tmp_path / "mlflow.db")
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'automatrix.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{tmp_path / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(tmp_path / "mlruns" / "models"),
        "MODEL_RELOAD_INTERVAL": "0.2",
        "LIVE_INTERVAL": "0.2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for name in (
        "API_KEY",
        "ENVIRONMENT",
        "DEBUG",
        "ENABLE_ML_TRAINING",
        "CORS_ORIGINS",
        "MAX_BATCH_ROWS",
        "MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)
    from flows.ingest import store_engine

    get_settings.cache_clear()
    store_engine.cache_clear()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    yield get_settings()
    get_settings.cache_clear()
    store_engine.cache_clear()


def set_champion(version: str) -> None:
    MlflowClient().set_registered_model_alias(NAME, "champion", version)


@pytest.fixture
def champion(api_settings: Settings, model_registry: Registry) -> str:
    """v1 is the champion before the app starts."""
    set_champion(model_registry.good[0])
    return model_registry.good[0]


@pytest.fixture
def client(champion: str) -> Iterator[TestClient]:
    from serving.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def wait_for(condition: object, timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server


@pytest.fixture
def live_server(champion: str) -> Iterator[LiveServer]:
    """The app on a real socket (uvicorn in a thread), for browsers and raw WebSocket clients."""
    from serving.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30)
    yield LiveServer(f"127.0.0.1:{port}", server)
    server.should_exit = True
    thread.join(timeout=15)
