"""Training on several hosts: two Prefect workers of one process pool, each in its own working
directory with its own HOME, run one share each of a NeuroWeaver search.

Real parts: the Prefect test server, the deployment applied from deploy/prefect.workers.yaml by
`prefect deploy`, two `prefect worker start` processes, a real `mlflow server` with proxied
artifacts (the workers share no folder), and the Optuna study on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

from monitoring.samples import METRICS
from tests.production.test_mlflow_server import host_environment
from tests.support.mlflow_server import fresh_database
from tests.support.models import metric_rows
from tests.support.polling import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
DEPLOYMENT = "neuroweaver-train/shared-search"
TRIALS_PER_RUN = 2
MODEL = "neuroweaver-workers"  # the session's MLflow server is shared with other tests


@pytest.fixture
def stores(mlflow_server_url: tuple[str, Path]) -> Iterator[dict[str, str]]:
    """The shared services: the session's MLflow server and a fresh Optuna storage."""
    with fresh_database("optuna") as optuna_storage:
        yield {"MLFLOW_TRACKING_URI": mlflow_server_url[0], "OPTUNA_STORAGE": optuna_storage}


def labelled_rows(n: int = 300) -> list[dict[str, float]]:
    x = metric_rows(n, seed=13)
    y = np.clip(1 - x[:, 3] / 100, 0, 1)
    return [
        {**dict(zip(METRICS, row.tolist(), strict=True)), "performance_score": float(t)}
        for row, t in zip(x, y, strict=True)
    ]


def apply_deployment(pool: str, env: dict[str, str]) -> None:
    """`prefect deploy` of the process-pool deployment in deploy/prefect.workers.yaml."""
    command = [PREFECT, "--no-prompt", "deploy", "--prefect-file", "deploy/prefect.workers.yaml"]
    command += ["--name", "shared-search", "--pool", pool]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


async def online_workers(pool: str) -> int:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        workers = await client.read_workers_for_work_pool(pool)
    return sum(1 for worker in workers if str(worker.status).endswith("ONLINE"))


async def start_runs(parameters: dict[str, Any], count: int) -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        runs = [
            await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            for _ in range(count)
        ]
    return [str(run.id) for run in runs]


async def run_states(ids: list[str]) -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = [await client.read_flow_run(uuid.UUID(i)) for i in ids]
    return [run.state.type.value if run.state else "NONE" for run in runs]


def test_two_workers_on_one_pool_share_one_study_and_register_once_each(
    prefect_harness: None, stores: dict[str, str], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    pool, study = f"train-{uuid.uuid4().hex[:8]}", f"shared-{uuid.uuid4().hex[:8]}"
    api_url = str(PREFECT_API_URL.value())

    async def create_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))

    asyncio.run(create_pool())
    apply_deployment(pool, host_environment(tmp_path / "deployer", PREFECT_API_URL=api_url))

    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    workers = []
    for host in hosts:
        host.mkdir()
        env = host_environment(
            host / "home",
            **stores,
            PREFECT_API_URL=api_url,
            PREFECT_WORKER_QUERY_SECONDS="1",
            DATABASE_URL=f"sqlite:///{host / 'metrics.db'}",
            MODEL_SAVE_PATH=str(host / "models"),
            MODEL_NAME=MODEL,
        )
        command = [PREFECT, "worker", "start", "--pool", pool, "--limit", "1"]
        with (host / "worker.log").open("wb") as log:
            workers.append(
                subprocess.Popen(command, cwd=host, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        wait_for(lambda: asyncio.run(online_workers(pool)) == 2, 120, 0.5)
        parameters = {
            "data": labelled_rows(),
            "trials": TRIALS_PER_RUN,
            "max_epochs": 2,
            "timeout_s": 240,
            "study_name": study,
        }
        ids = asyncio.run(start_runs(parameters, 2))
        done = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
        wait_for(lambda: set(asyncio.run(run_states(ids))) <= done, 300, 1.0)
        states = asyncio.run(run_states(ids))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    logs = [(host / "worker.log").read_text() for host in hosts]
    # Each worker ran one of the two runs (a worker may reach for a run the other just took).
    taken = [ran(log) for log in logs]
    assert sorted(map(sorted, taken)) == sorted([[i] for i in ids]), "\n".join(logs)
    log_of = {next(iter(run)): log for run, log in zip(taken, logs, strict=True)}
    # The shared pruner may stop every trial of one run; that run then fails saying so, and its
    # trials still count in the study. At least one run completes.
    for run_id, state in zip(ids, states, strict=True):
        assert state == "COMPLETED" or "no trial completed" in log_of[run_id], log_of[run_id]
    completed = states.count("COMPLETED")
    assert completed >= 1

    trials = optuna.load_study(study_name=study, storage=stores["OPTUNA_STORAGE"]).trials
    assert sorted(t.number for t in trials) == list(range(2 * TRIALS_PER_RUN))
    client = MlflowClient(tracking_uri=stores["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions(f"name='{MODEL}'")
    # One registration per completed run, each from a training parent run of its own.
    assert len(versions) == completed
    parents = [client.get_run(str(v.run_id)) for v in versions]
    assert len({p.info.run_id for p in parents}) == completed
    assert all(p.data.tags.get("kind") == "training" for p in parents)
    champion = client.get_registered_model(MODEL).aliases["champion"]
    assert str(champion) in {v.version for v in versions}


def ran(log: str) -> set[str]:
    """The flow runs a worker's log says it submitted and was not told to abort."""
    submitted = set(re.findall(r"submitting flow run '([0-9a-f-]+)'", log))
    return submitted - set(re.findall(r"Aborted submission of flow run '([0-9a-f-]+)'", log))
