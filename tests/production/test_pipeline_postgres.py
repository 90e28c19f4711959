"""The production profile end to end: every store on its own PostgreSQL database.

Ingest (Prefect flow) -> train (Optuna on PostgreSQL, MLflow tracking and registry on
PostgreSQL) -> promote -> the real app serves the champion -> predict names its version.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient

from monitoring.config import reset
from tests.support.models import SAMPLE
from tests.support.postgres import table_names

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def use_postgres_stores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make: Callable[[str], str]
) -> dict[str, str]:
    urls = {
        "DATABASE_URL": make("metrics"),
        "MLFLOW_TRACKING_URI": make("mlflow"),
        "OPTUNA_STORAGE": make("optuna"),
    }
    for key, value in {
        **urls,
        "MODEL_SAVE_PATH": str(tmp_path / "shared" / "models"),
        "MODEL_RELOAD_INTERVAL": "0.5",
    }.items():
        monkeypatch.setenv(key, value)
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "PREFECT_API_URL", "ENABLE_ML_TRAINING"):
        monkeypatch.delenv(name, raising=False)

    # MLflow opens PostgreSQL itself here (no server): its artifacts go to ./mlruns/artifacts.
    monkeypatch.chdir(tmp_path)
    reset()
    mlflow.set_tracking_uri(urls["MLFLOW_TRACKING_URI"])
    return urls


def test_run_pipeline_on_postgres_serves_the_promoted_champion(
    prefect_harness: None,
    postgres_databases: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from flows.ingest import ingest_flow
    from flows.train import train_flow
    from serving.app import create_app

    urls = use_postgres_stores(monkeypatch, tmp_path, postgres_databases)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    ingested = ingest_flow(source="simulator", start=end - timedelta(days=2), end=end)
    trained = train_flow(trials=2, timeout_s=120, window_days=3, max_epochs=2)
    try:
        with TestClient(create_app()) as client:
            ready = client.get("/ready")
            answer = client.post("/api/v2/neuroweaver/predict", json=SAMPLE)
            models = client.get("/api/v2/neuroweaver/models").json()
    finally:
        reset()
    assert ingested["accepted"] > 10_000 and ingested["rejected"] == 0
    assert trained["promoted"] is True
    assert ready.status_code == 200, ready.text
    assert answer.status_code == 200
    assert answer.json()["model_version"] == trained["version"]
    assert answer.json()["model_alias"] == "champion"
    champion = next(v for v in models["versions"] if "champion" in v["aliases"])
    assert champion["version"] == trained["version"]
    # Each store ran its own migrations in its own database, and only there.
    metrics, tracking, optuna = (
        table_names(urls[k]) for k in ("DATABASE_URL", "MLFLOW_TRACKING_URI", "OPTUNA_STORAGE")
    )
    assert {"metric_samples", "training_runs", "relay_messages"} <= metrics
    assert {"registered_models", "model_versions", "runs"} <= tracking
    assert {"studies", "trials"} <= optuna
    assert not (metrics & tracking) - {"alembic_version"}
    assert not (metrics & optuna) - {"alembic_version"}
