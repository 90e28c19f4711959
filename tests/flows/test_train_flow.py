"""The training flow end to end: real Prefect runs, a real MLflow store, a real Optuna storage."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.exceptions import ParameterTypeError

from flows.ingest import ingest_flow
from flows.train import train_flow
from monitoring.config import reset
from monitoring.neuroweaver.training import TrainingDataError
from serving.settings import ServingSettings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
TINY = {"trials": 2, "max_epochs": 2, "window_days": 2.0, "timeout_s": 120.0}


@pytest.fixture
def ingested(settings: ServingSettings) -> ServingSettings:
    end = datetime.now(UTC)
    ingest_flow(source="simulator", start=end - timedelta(days=1), end=end)
    return settings


def _child_runs(parent_run_id: str) -> list[Any]:
    return MlflowClient().search_runs(
        [r.info.experiment_id for r in [MlflowClient().get_run(parent_run_id)]],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
    )


def test_pipeline_simulate_ingest_train_registers_a_champion_with_signature(
    ingested: ServingSettings,
) -> None:
    result = train_flow(**TINY)
    champion = MlflowClient().get_model_version_by_alias("neuroweaver", "champion")
    info = mlflow.models.get_model_info(f"models:/neuroweaver/{result['version']}")
    assert str(champion.version) == result["version"] and result["promoted"]
    assert info.signature is not None and info.saved_input_example_info is not None
    assert champion.tags["promotion.reason"] == "no champion yet"
    parent = MlflowClient().get_run(result["mlflow_run_id"])
    assert parent.data.tags["promotion.promoted"] == "True"


def test_a_version_records_its_training_rows_as_an_mlflow_dataset(
    ingested: ServingSettings,
) -> None:
    result = train_flow(**TINY)
    run = MlflowClient().get_run(result["mlflow_run_id"])
    (dataset,) = run.inputs.dataset_inputs
    source = json.loads(dataset.dataset.source)["tags"]
    assert source["store"].endswith("metric_samples") and source["window_days"] == "2"
    assert int(source["rows"]) > 0 and source["sha256"] == dataset.dataset.digest
    assert source["since"] < source["until"] and "api-gateway" in source["services"].split(",")
    assert json.loads(dataset.dataset.schema)["mlflow_colspec"]


def test_pipeline_logs_each_trial_as_a_nested_run_with_its_epoch_losses(
    ingested: ServingSettings,
) -> None:
    result = train_flow(**TINY)
    children = _child_runs(result["mlflow_run_id"])
    trials = [run for run in children if run.data.tags.get("kind") == "trial"]
    baselines = {
        run.data.tags["mlflow.runName"]
        for run in children
        if run.data.tags.get("kind") == "baseline"
    }
    assert len(trials) == TINY["trials"]
    assert {"layers", "width", "dropout", "activation", "learning_rate"} <= trials[
        0
    ].data.params.keys()
    assert len(MlflowClient().get_metric_history(trials[0].info.run_id, "val_loss")) >= 1
    assert baselines == {"baseline-constant", "baseline-hist_gradient_boosting"}


@pytest.mark.parametrize("bad", [{"trials": 0}, {"timeout_s": -5}, {"window_days": "a week"}])
def test_train_flow_refuses_invalid_parameter(
    settings: ServingSettings, bad: dict[str, Any]
) -> None:
    with pytest.raises(ParameterTypeError):
        train_flow(**(TINY | bad))


def test_train_flow_with_too_little_data_registers_nothing(settings: ServingSettings) -> None:
    rows = [
        {
            "cpu_usage": 10,
            "memory_usage": 20,
            "network_latency": 30,
            "error_rate": 0,
            "request_count": 5,
            "performance_score": 0.9,
        }
    ] * 5
    with pytest.raises(TrainingDataError, match="at least"):
        train_flow(**TINY, data=rows)
    assert MlflowClient().search_registered_models() == []


def test_train_flow_on_empty_store_says_to_ingest_first(settings: ServingSettings) -> None:
    with pytest.raises(TrainingDataError, match="ingest first"):
        train_flow(**TINY)


def test_train_flow_trains_on_given_labelled_rows(settings: ServingSettings) -> None:
    rows = [
        {
            "cpu_usage": float(i % 100),
            "memory_usage": 50.0,
            "network_latency": 100.0 + i,
            "error_rate": 0.5,
            "request_count": 500.0,
            "performance_score": (i % 100) / 100,
        }
        for i in range(400)
    ]
    result = train_flow(**TINY, data=rows)
    assert (
        str(MlflowClient().get_model_version_by_alias("neuroweaver", "champion").version)
        == result["version"]
    )
    (dataset,) = MlflowClient().get_run(result["mlflow_run_id"]).inputs.dataset_inputs
    source = json.loads(dataset.dataset.source)["tags"]
    assert source["store"] == "labelled rows given by the caller" and "since" not in source


def test_two_trainings_at_once_register_two_versions_and_lose_no_trial(
    ingested: ServingSettings,
) -> None:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def train() -> None:
        try:
            results.append(train_flow(**TINY))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=train) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    versions = {r["version"] for r in results}
    assert versions == {"1", "2"}
    assert (
        str(MlflowClient().get_model_version_by_alias("neuroweaver", "champion").version)
        in versions
    )
    for result in results:
        trials = [
            r for r in _child_runs(result["mlflow_run_id"]) if r.data.tags.get("kind") == "trial"
        ]
        assert len(trials) == TINY["trials"]


def test_train_flow_fails_clearly_when_mlflow_is_unreachable(
    ingested: ServingSettings, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    reset()
    with pytest.raises(Exception, match="127.0.0.1:9"):
        train_flow(**TINY)
