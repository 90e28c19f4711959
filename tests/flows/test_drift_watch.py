"""Retraining on drift, by Prefect's own machinery, on a real `prefect server start`: the
orchestration flow finds the served NeuroWeaver's inputs drifted from the profile logged with
it, emits automatrix.model.drift, and prefect.yaml's deployment trigger starts a training run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.drift_watch import LAST_CHECK_TAG, LAST_EVENT_TAG, watch
from flows.train import EXPERIMENT, configure_mlflow
from monitoring import drift
from monitoring.config import get_orchestrator_settings, get_settings
from monitoring.neuroweaver import registry
from monitoring.samples import METRICS, Sample
from monitoring.store import ingestion
from monitoring.store.engine import open_store
from serving.settings import ServingSettings
from tests.support.models import NAME, make_model, set_champion
from tests.support.polling import wait_for
from tests.support.prefect_server import PREFECT, prefect_server, server_environment

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(5)
TRAINING = pd.DataFrame(
    {
        "cpu_usage": RNG.uniform(20, 60, 600),
        "memory_usage": RNG.uniform(30, 70, 600),
        "network_latency": RNG.uniform(20, 100, 600),
        "error_rate": RNG.uniform(0, 2, 600),
        "request_count": RNG.uniform(100, 1000, 600),
    }
)


def _champion_with_profile() -> str:
    """A served NeuroWeaver whose run logged the reference profile of TRAINING."""
    with mlflow.start_run(experiment_id=configure_mlflow(get_settings(), EXPERIMENT)):
        registry.log_reference_profile(drift.profile_of(TRAINING, METRICS))
        version = registry.register(
            make_model(TRAINING.to_numpy(), seed=1), NAME, TRAINING.to_numpy()[:5]
        )
    set_champion(version)
    return version


def _store_last_hour(latency: tuple[float, float], now: datetime) -> None:
    rng = np.random.default_rng(9)
    samples = [
        Sample(
            service=service,
            timestamp=now - timedelta(minutes=minute),
            cpu_usage=float(rng.uniform(20, 60)),
            memory_usage=float(rng.uniform(30, 70)),
            network_latency=float(rng.uniform(*latency)),
            error_rate=float(rng.uniform(0, 2)),
            request_count=float(rng.uniform(100, 1000)),
        )
        for service in ("checkout", "search")
        for minute in range(1, 59)
    ]
    ingestion.store_batch(open_store(get_settings().database_url), samples)


def test_inputs_like_the_training_rows_are_stable_and_emit_nothing(
    settings: ServingSettings,
) -> None:
    version = _champion_with_profile()
    now = datetime.now(UTC)
    _store_last_hour((20, 100), now)
    report = watch(NAME, "champion", settings.database_url, get_orchestrator_settings(), now)
    assert report["status"] == "stable" and not report["event_emitted"]
    assert report["version"] == version and report["rows"] == 116
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert json.loads(tags[LAST_CHECK_TAG])["drifted"] is False and LAST_EVENT_TAG not in tags


def test_a_version_without_a_profile_or_too_few_live_rows_is_not_judged(
    settings: ServingSettings,
) -> None:
    with mlflow.start_run(experiment_id=configure_mlflow(get_settings(), EXPERIMENT)):
        version = registry.register(make_model(TRAINING.to_numpy(), 1), NAME, TRAINING.to_numpy())
    set_champion(version)
    config = get_orchestrator_settings()
    now = datetime.now(UTC)
    report = watch(NAME, "champion", settings.database_url, config, now)
    assert report["status"] == "no reference profile logged with this version"
    _champion_with_profile()
    assert watch(NAME, "champion", settings.database_url, config, now)["status"] == (
        "0 live rows, fewer than 50"
    )


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[str]:
    """A real Prefect server with the automatrix pool and prefect.yaml's `daily` deployment."""
    with prefect_server(tmp_path / "prefect") as url:
        env = server_environment(tmp_path / "prefect", url)
        for command in (
            [PREFECT, "work-pool", "create", "automatrix", "--type", "process"],
            [PREFECT, "--no-prompt", "deploy", "--name", "daily"],
        ):
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield url


def _orchestrate(api_url: str, home: Path) -> list[dict[str, Any]]:
    """One run of the orchestration flow in its own process, against the real server."""
    code = (
        "import json; from flows.orchestrate import orchestrate_flow;"
        "print('DRIFT' + json.dumps(orchestrate_flow()['drift'], default=str))"
    )
    env = server_environment(home, api_url)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("DRIFT")]
    return list(json.loads(line.removeprefix("DRIFT")))


def _triggered_runs(api_url: str) -> list[Any]:
    from prefect.client.orchestration import PrefectClient

    async def read() -> list[Any]:
        async with PrefectClient(api_url) as client:
            deployment = await client.read_deployment_by_name("neuroweaver-train/daily")
            runs = await client.read_flow_runs()
        return [
            run
            for run in runs
            if run.deployment_id == deployment.id
            and run.created_by is not None
            and run.created_by.type == "AUTOMATION"
        ]

    return asyncio.run(read())


def test_drifted_inputs_emit_the_event_and_the_deployment_trigger_starts_a_training(
    settings: ServingSettings, prefect_api: str, tmp_path: Path
) -> None:
    version = _champion_with_profile()
    _store_last_hour((400, 800), datetime.now(UTC))  # latency far above anything trained on
    (report,) = _orchestrate(prefect_api, tmp_path / "prefect")
    assert report["status"] == "drifted" and report["event_emitted"]
    assert report["version"] == version and report["worst_feature"] == "network_latency"
    assert report["psi"]["network_latency"] > 1 and report["psi"]["cpu_usage"] < 0.25
    wait_for(lambda: len(_triggered_runs(prefect_api)) == 1, 60, 1)
    (again,) = _orchestrate(prefect_api, tmp_path / "prefect")  # within the cool-down
    assert again["status"] == "drifted" and not again["event_emitted"]
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert json.loads(tags[LAST_CHECK_TAG])["worst_feature"] == "network_latency"
    assert datetime.fromisoformat(tags[LAST_EVENT_TAG]) < datetime.now(UTC)
