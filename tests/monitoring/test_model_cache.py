"""Where models live: MLflow's artifacts where the store or server says, loaded copies in MODEL_SAVE_PATH."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest

from flows.train import configure_mlflow
from monitoring.config import Settings
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.model import WEIGHTS_FILE, Architecture, NeuroWeaverModel, build_network
from serving.settings import ServingSettings
from tests.support.models import metric_rows

NAME = "neuroweaver"


def test_artifact_root_of_an_mlflow_server_is_left_to_the_server() -> None:
    for uri in ("http://mlflow.internal:5000", "https://mlflow.example.com"):
        assert Settings(mlflow_tracking_uri=uri).artifact_root() is None


def test_artifact_root_of_a_sqlite_store_is_beside_its_file(tmp_path: Path) -> None:
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    assert settings.artifact_root() == (tmp_path / "home" / "artifacts").as_uri()


def test_artifact_root_does_not_depend_on_model_save_path(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    one = Settings(mlflow_tracking_uri=uri, model_save_path=tmp_path / "a")
    other = Settings(mlflow_tracking_uri=uri, model_save_path=tmp_path / "b" / "c")
    assert one.artifact_root() == other.artifact_root()


def _register_small_model(settings: ServingSettings) -> str:
    x = metric_rows(60, seed=3)
    arch = Architecture(layers=1, width=8)
    model = NeuroWeaverModel(arch, FeaturePipeline.fit(x), build_network(arch))
    mlflow.set_experiment(experiment_id=configure_mlflow(settings))
    with mlflow.start_run():
        return registry.register(model, NAME, x)


@pytest.mark.slow  # one real registration: MLflow's log_model takes most of it
def test_load_version_keeps_a_copy_in_model_save_path(settings: ServingSettings) -> None:
    version = _register_small_model(settings)
    first, _ = registry.load_version(NAME, version)
    copies = list((settings.model_save_path / NAME).glob(f"{version}-*"))
    assert len(copies) == 1 and list(copies[0].rglob(WEIGHTS_FILE))
    # The store's own artifacts are elsewhere; with them gone, the loaded copy still serves.
    artifacts = Path(str(settings.artifact_root()).removeprefix("file://"))
    assert not artifacts.is_relative_to(settings.model_save_path)
    shutil.rmtree(artifacts)
    again, _ = registry.load_version(NAME, version)
    x = metric_rows(5, seed=4)
    np.testing.assert_allclose(again.predict(x), first.predict(x))
