"""The capacity forecaster's lifecycle: trained by a real Prefect flow run, registered in a real
MLflow store, promoted only when better, and served by alias."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.train_capacity import train_capacity_flow
from monitoring.assess.capacity_model import MODEL_NAME, STATE_FILE, FittedForecaster
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.training import TrainingDataError
from monitoring.sources.simulator import simulate
from monitoring.store import ingestion
from monitoring.store.engine import open_store
from serving.orchestrator.forecaster import forecaster_holder
from serving.settings import ServingSettings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
SERVICES = ("api-gateway",)
DAYS = 4  # two daily cycles to fit on, a day of backtest, and the judged day


@pytest.fixture
def history(settings: ServingSettings) -> ServingSettings:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    window = simulate(end - timedelta(days=DAYS), end, services=SERVICES)
    ingestion.store_batch(open_store(settings.database_url), window.samples)
    return settings


def test_first_training_registers_a_champion_with_its_per_series_choices(
    history: ServingSettings,
) -> None:
    result = train_capacity_flow(window_days=DAYS)
    assert result["promoted"] and result["reason"] == "no champion yet"
    assert result["series"] == ["api-gateway/cpu_usage", "api-gateway/request_count"]
    champion = MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == result["version"]
    assert champion.tags["promotion.promoted"] == "True"
    state = FittedForecaster.from_dict(
        registry.load_state(MODEL_NAME, result["version"], STATE_FILE)
    )
    choice = state.choice_for("api-gateway", "cpu_usage")
    assert choice is not None and choice.method and choice.backtest
    run = MlflowClient().get_run(result["mlflow_run_id"])
    assert run.data.metrics["heldout_mase"] == pytest.approx(result["heldout_mase"])
    (dataset,) = run.inputs.dataset_inputs
    source = json.loads(dataset.dataset.source)["tags"]
    assert source["window_days"] == str(DAYS) and source["sha256"] == dataset.dataset.digest
    assert int(source["rows"]) >= 2 * (DAYS - 1) * 288  # both series, 5-minute means
    assert source["since"] < source["until"]


def test_second_training_is_judged_beside_the_champion_on_the_same_day(
    history: ServingSettings,
) -> None:
    first = train_capacity_flow(window_days=DAYS)
    second = train_capacity_flow(window_days=DAYS)
    version = MlflowClient().get_model_version(MODEL_NAME, second["version"])
    assert version.tags["promotion.champion_version"] == first["version"]
    # Both are judged on the same day, and the decision follows the figures.
    assert second["champion_heldout_mase"] is not None
    assert second["promoted"] == (second["heldout_mase"] <= second["champion_heldout_mase"])
    assert version.tags["promotion.champion_mase"] == f"{second['champion_heldout_mase']:.5f}"
    aliases = MlflowClient().get_registered_model(MODEL_NAME).aliases
    champion = second["version"] if second["promoted"] else first["version"]
    assert aliases == {"champion": int(champion)}


def test_served_holder_loads_the_champion_and_the_pyfunc_forecasts_with_it(
    history: ServingSettings,
) -> None:
    result = train_capacity_flow(window_days=DAYS)
    holder = forecaster_holder()
    assert holder.reload() and holder.version == result["version"]
    assert holder.current is not None and holder.current.choice_for("api-gateway", "cpu_usage")
    assert not holder.reload()  # same version: nothing to swap
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    stamps = pd.date_range("2026-01-01", periods=3 * 288, freq="5min")  # naive UTC, as MLflow wants
    cycle = [50 + 20 * ((i % 288) / 288) for i in range(len(stamps))]
    rows = pd.DataFrame(
        {"service": "api-gateway", "metric": "cpu_usage", "timestamp": stamps, "value": cycle}
    )
    out = model.predict(rows, params={"horizon": 12})
    assert len(out) == 12 and {"forecast", "lo_80", "hi_95"} <= set(out.columns)
    assert (out["lo_95"] <= out["forecast"]).all() and (out["forecast"] <= out["hi_95"]).all()


def test_training_on_an_empty_store_fails_with_a_clear_message(settings: ServingSettings) -> None:
    with pytest.raises(TrainingDataError, match="no samples"):
        train_capacity_flow(window_days=DAYS)
