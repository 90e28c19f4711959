"""The API's settings for a test: a private copy of the session's registry and an empty store."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from monitoring.config import reset
from serving.settings import ServingSettings, get_settings
from tests.support.models import Registry


def use_api_environment(
    folder: Path, monkeypatch: pytest.MonkeyPatch, model_registry: Registry
) -> ServingSettings:
    """Points the settings at a private copy of the registry (so aliases can move) and an
    empty metric store in `folder`."""
    shutil.copy(model_registry.db, folder / "mlflow.db")
    env = {
        "DATABASE_URL": f"sqlite:///{folder / 'automatrix.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{folder / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(folder / "mlruns" / "models"),
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
    reset()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    return get_settings()
