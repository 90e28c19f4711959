"""The registry side of NeuroWeaver, on a real temporary MLflow store: load, check and promote."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from monitoring.neuroweaver import registry
from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel, build_network
from monitoring.neuroweaver.training import Hyperparameters, Split, train_model
from serving.settings import ServingSettings
from tests.support.net import free_port

NAME = "neuroweaver"
RNG = np.random.default_rng(7)
X = np.column_stack(
    [
        RNG.uniform(0, 100, 600),
        RNG.uniform(0, 100, 600),
        RNG.uniform(10, 500, 600),
        RNG.uniform(0, 10, 600),
        RNG.uniform(10, 3000, 600),
    ]
)
Y = np.clip(1 - X[:, 2] / 500 - X[:, 3] / 20, 0, 1)  # latency and errors lower the score


def _frame(rows: slice) -> pd.DataFrame:
    frame = pd.DataFrame(
        X[rows],
        columns=["cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count"],
    )
    return frame.assign(performance_score=Y[rows])


def _trained() -> NeuroWeaverModel:
    split = Split(_frame(slice(0, 400)), _frame(slice(400, 500)), _frame(slice(500, 600)))
    params = Hyperparameters(
        Architecture(layers=2, width=32, dropout=0.0), learning_rate=5e-3, epochs=30, batch_size=64
    )
    return train_model(params, split)[0]


def _untrained() -> NeuroWeaverModel:
    arch = Architecture(layers=1, width=8)
    return NeuroWeaverModel(arch, FeaturePipeline.fit(X), build_network(arch))


def _register(model: NeuroWeaverModel) -> str:
    with mlflow.start_run():
        return registry.register(model, NAME, X)


def _champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


def test_promote_first_version_becomes_champion(settings: ServingSettings) -> None:
    version = _register(_trained())
    decision = registry.decide(NAME, "champion", version, X[500:], Y[500:])
    registry.apply(decision, NAME, "champion")
    assert decision.promoted and _champion() == version


def test_promote_worse_version_keeps_champion_and_gets_no_alias(
    settings: ServingSettings,
) -> None:
    good = _register(_trained())
    registry.apply(registry.decide(NAME, "champion", good, X[500:], Y[500:]), NAME, "champion")
    bad = _register(_untrained())
    decision = registry.decide(NAME, "champion", bad, X[500:], Y[500:])
    registry.apply(decision, NAME, "champion")
    version = MlflowClient().get_model_version(NAME, bad)
    assert not decision.promoted and _champion() == good
    assert version.aliases == []
    assert version.tags["promotion.promoted"] == "False"
    assert float(version.tags["promotion.new_rmse"]) > float(
        version.tags["promotion.champion_rmse"]
    )


def test_promote_better_version_takes_champion(settings: ServingSettings) -> None:
    bad = _register(_untrained())
    registry.apply(registry.decide(NAME, "champion", bad, X[500:], Y[500:]), NAME, "champion")
    good = _register(_trained())
    decision = registry.decide(NAME, "champion", good, X[500:], Y[500:])
    registry.apply(decision, NAME, "champion")
    assert decision.promoted and _champion() == good
    assert decision.champion_version == bad and "<" in decision.reason


def test_reload_from_registry_gives_same_predictions_as_trained_model(
    settings: ServingSettings,
) -> None:
    model = _trained()
    version = _register(model)
    reloaded, loaded_version = registry.load_version(NAME, version)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    frame = pd.DataFrame(X[:50], columns=list(model.pipeline.features))
    assert loaded_version == version
    np.testing.assert_allclose(reloaded.predict(X[:50]), model.predict(X[:50]), atol=1e-7)
    np.testing.assert_allclose(
        pyfunc.predict(frame)["performance_score"], model.predict(X[:50]), atol=1e-7
    )


def test_load_version_refuses_a_version_without_weights(settings: ServingSettings) -> None:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(registry.PYFUNC_CODE), registered_model_name=NAME
        )
    with pytest.raises(registry.ModelLoadError):
        registry.load_version(NAME, str(info.registered_model_version))


@pytest.mark.slow
def test_champion_answers_in_mlflow_models_serve(settings: ServingSettings) -> None:
    version = _register(_trained())
    MlflowClient().set_registered_model_alias(NAME, "champion", version)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # it execs uvicorn
    mlflow_cli = str(bin_dir / "mlflow")
    server = subprocess.Popen(
        [
            mlflow_cli,
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        body = {
            "dataframe_records": [
                dict(
                    zip(
                        [
                            "cpu_usage",
                            "memory_usage",
                            "network_latency",
                            "error_rate",
                            "request_count",
                        ],
                        [85.0, 70.0, 200.0, 3.0, 2000.0],
                        strict=True,
                    )
                )
            ]
        }
        deadline, response = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(1)
        assert response is not None and response.status_code == 200
        [prediction] = response.json()["predictions"]
        assert 0 <= prediction["performance_score"] <= 1
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_tracking_store_that_cannot_open_is_unreachable_not_a_crash(tmp_path: Path) -> None:
    # Opening a database store runs MLflow's migrations; when that fails (here the database's
    # folder is a file; in production, another process creating the same SQLite file), start-up
    # must go on without a model and the poller try again.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{blocker / 'mlflow.db'}")
    try:
        with pytest.raises(registry.RegistryUnreachable):
            registry.resolve_alias(NAME, "champion")
    finally:
        mlflow.set_tracking_uri(previous)
