"""Shared fixtures: isolated stores per test, the Prefect test harness, PostgreSQL databases, RelayCore backends."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from sqlalchemy import create_engine, text

from monitoring.config import reset
from serving.settings import ServingSettings, get_settings
from tests.support.postgres import POSTGRES_ADMIN_URL, postgres_reachable
from tests.support.relaycore import Backend, start_backend

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Nothing may leave the machine: Prefect's server would otherwise send telemetry.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServingSettings]:
    """ServingSettings whose metric store, MLflow store and Optuna storage live in a temporary folder."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'automatrix.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    monkeypatch.setenv("MODEL_SAVE_PATH", str(tmp_path / "mlruns" / "models"))
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    yield from _fresh_settings()


def _fresh_settings() -> Iterator[ServingSettings]:

    reset()
    current = get_settings()
    mlflow.set_tracking_uri(current.mlflow_tracking_uri)
    _forget_active_experiment()
    yield current
    reset()


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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    name = f"automatrix_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    """`backends(name, delay_ms=..., fail_status=...)` starts one; all are killed afterwards."""
    started: list[Backend] = []

    def start(name: str, **options: object) -> Backend:
        backend = start_backend(name, **options)  # type: ignore[arg-type]
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.kill()
