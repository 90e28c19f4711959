"""The failure risk's lifecycle: learned by a real Prefect flow run on a simulated store, judged
beside the hand-set rule (a nested run) on the same test days, registered in a real MLflow store
with its training data's lineage, and promoted only when it beats the rule and the champion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.train_failure import train_failure_flow
from monitoring.assess import failure_model
from monitoring.assess.failure_model import FEATURES, HAND_SET, MODEL_NAME
from monitoring.sources.simulator import simulate
from monitoring.store import ingestion
from monitoring.store.engine import open_store
from serving.settings import ServingSettings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
SERVICES = ("checkout", "search")
DAYS = 3


@pytest.fixture
def history(settings: ServingSettings) -> ServingSettings:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    window = simulate(end - timedelta(days=DAYS), end, services=SERVICES)
    engine = open_store(settings.database_url)
    ingestion.store_batch(engine, window.samples)
    ingestion.store_incidents(engine, window.incidents)
    return settings


def test_training_registers_failure_risk_with_the_hand_set_rule_nested_and_its_lineage(
    history: ServingSettings,
) -> None:
    result = train_failure_flow(window_days=DAYS)
    version = MlflowClient().get_model_version(MODEL_NAME, result["version"])
    assert version.tags["promotion.promoted"] == str(result["promoted"])
    assert version.tags["promotion.rule_brier"] == f"{result['hand_set_rule']['brier']:.5f}"
    run = MlflowClient().get_run(result["mlflow_run_id"])
    assert run.data.metrics["test_brier"] == pytest.approx(result["learned"]["brier"])
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest and "metric_samples" in dataset.dataset.source
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    nested = MlflowClient().search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert [r.info.run_name for r in nested] == [HAND_SET]
    assert nested[0].data.metrics["test_brier"] == pytest.approx(result["hand_set_rule"]["brier"])


def test_training_promotes_only_a_version_that_beats_the_hand_set_rule(
    history: ServingSettings,
) -> None:
    result = train_failure_flow(window_days=DAYS)
    learned, rule = result["learned"], result["hand_set_rule"]
    beats = learned["brier"] < rule["brier"] and learned["f1"] >= rule["f1"]
    assert result["promoted"] == beats
    aliases = MlflowClient().get_registered_model(MODEL_NAME).aliases
    assert (aliases.get("champion") == int(result["version"])) == beats
    assert "challenger" not in aliases  # a loser gets no alias, so it never reaches shadow


def test_registered_state_carries_the_validation_threshold_and_loads_without_pickle(
    history: ServingSettings,
) -> None:
    result = train_failure_flow(window_days=DAYS, horizon_minutes=20)
    state = failure_model.load_version(result["version"])
    assert state.threshold == result["threshold"] and state.horizon_minutes == 20
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{result['version']}")
    answer = model.predict(pd.DataFrame([dict.fromkeys(FEATURES, 0.0)]))
    assert 0 <= answer["risk"].iloc[0] <= 1
    assert bool(answer["alarm"].iloc[0]) == (answer["risk"].iloc[0] >= state.threshold)


def test_second_training_is_judged_beside_the_champion_on_the_same_days(
    history: ServingSettings,
) -> None:
    first = train_failure_flow(window_days=DAYS)
    if not first["promoted"]:
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", first["version"])
    second = train_failure_flow(window_days=DAYS)
    assert second["champion"] is not None
    version = MlflowClient().get_model_version(MODEL_NAME, second["version"])
    assert version.tags["promotion.champion_version"] == first["version"]
    # Judged on the same test rows, and promoted only past the rule and the champion.
    learned, champion, rule = second["learned"], second["champion"], second["hand_set_rule"]
    assert champion["rows"] == learned["rows"] and champion["events"] == learned["events"]
    beats_champion = learned["brier"] < champion["brier"] and learned["f1"] >= champion["f1"]
    beats_rule = learned["brier"] < rule["brier"] and learned["f1"] >= rule["f1"]
    assert second["promoted"] == (beats_champion and beats_rule)


def test_training_on_a_store_without_samples_says_to_ingest(settings: ServingSettings) -> None:
    with pytest.raises(Exception, match="ingest first"):
        train_failure_flow(window_days=DAYS)


def _champion_of(result: dict[str, object]) -> str:
    """Points @champion at the trained version (whether or not it earned it here)."""
    version = str(result["version"])
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version)
    return version


def test_cycle_assessment_uses_the_champion_and_else_the_hand_set_rule(
    history: ServingSettings,
) -> None:
    from monitoring.config import get_orchestrator_settings
    from monitoring.orchestrator.cycle import assess_service
    from serving.orchestrator.risk import risk_holder

    engine, now = open_store(history.database_url), datetime.now(UTC)
    config = get_orchestrator_settings()
    before = assess_service(engine, "checkout", now, None, config)
    assert before.risk is not None and before.risk.model == HAND_SET
    version = _champion_of(train_failure_flow(window_days=DAYS))
    holder = risk_holder()
    assert holder.reload() and holder.current is not None
    after = assess_service(engine, "checkout", now, None, config, risk_model=holder.current)
    assert after.risk is not None and after.risk.model == f"failure-risk v{version}"
    assert after.risk.threshold == holder.current.state.threshold
    assert 0 <= after.risk.risk <= 1 and after.risk.factors


def test_insights_say_which_risk_model_answered(history: ServingSettings) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app()) as client:
        rule = client.get("/api/v2/ai/insights/checkout").json()["failure_risk"]
    assert rule["risk_model"] == "hand-set rule" and rule["threshold"] is None
    version = _champion_of(train_failure_flow(window_days=DAYS))
    with TestClient(create_app()) as client:
        learned = client.get("/api/v2/ai/insights/checkout").json()["failure_risk"]
    assert learned["risk_model"] == f"failure-risk v{version}"
    assert learned["alarm"] == (learned["risk"] >= learned["threshold"])
