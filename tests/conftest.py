"""Shared fixtures: isolated stores per test, the Prefect test harness, and PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from sqlalchemy import create_engine, text

from serving.settings import Settings, get_settings

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Nothing may leave the machine: Prefect's server would otherwise send telemetry.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
POSTGRES_ADMIN_URL = os.environ.get(
    "AUTOMATRIX_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose metric store, MLflow store and Optuna storage live in a temporary folder."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'automatrix.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    monkeypatch.setenv("MODEL_SAVE_PATH", str(tmp_path / "mlruns" / "models"))
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    yield from _fresh_settings()


def _fresh_settings() -> Iterator[Settings]:
    from flows.ingest import store_engine

    get_settings.cache_clear()
    store_engine.cache_clear()
    current = get_settings()
    mlflow.set_tracking_uri(current.mlflow_tracking_uri)
    _forget_active_experiment()
    yield current
    get_settings.cache_clear()
    store_engine.cache_clear()


def _forget_active_experiment() -> None:
    """An experiment set by an earlier test belongs to that test's store; MLflow keeps it in a global."""
    import mlflow.tracking.fluent as fluent

    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session: real flow runs, no shared state."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _postgres_reachable() -> bool:
    try:
        with create_engine(POSTGRES_ADMIN_URL).connect():
            return True
    except Exception:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    if not _postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    name = f"automatrix_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
