"""Scale-out on PostgreSQL with real processes: two trainers on one study, several APIs on one queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.relaycore import start_backend

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))


def environment(**values: str) -> dict[str, str]:
    env = {**os.environ, **values, "PYTHONPATH": str(ROOT)}
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG"):
        env.pop(name, None)
    return env


def test_train_two_processes_on_one_study_splits_trials_without_loss(
    prefect_harness: None, postgres_databases: Callable[[str], str], tmp_path: Path
) -> None:
    import optuna
    from prefect.settings import PREFECT_API_URL

    from monitoring.sources.simulator import simulate
    from monitoring.store import ingestion
    from monitoring.store.engine import open_store

    stores = {
        "DATABASE_URL": postgres_databases("metrics"),
        "MLFLOW_TRACKING_URI": postgres_databases("mlflow"),
        "OPTUNA_STORAGE": postgres_databases("optuna"),
    }
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    ingestion.store_batch(
        open_store(stores["DATABASE_URL"]), list(simulate(end - timedelta(days=1), end).samples)
    )
    env = environment(
        **stores,
        MODEL_SAVE_PATH=str(tmp_path / "models"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
    )
    command = [
        AUTOMATRIX,
        "train",
        "--study-name",
        "shared-search",
        "--trials",
        "3",
        "--max-epochs",
        "2",
        "--window-days",
        "1",
        "--timeout",
        "240",
    ]
    workers = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=400) for w in workers]
    # A worker whose every trial the shared pruner stopped ends with exit 1 and says so; its
    # trials still count in the study.
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0 or "no trial completed" in err, err[-2000:]
    assert 0 in [w.returncode for w in workers]
    results = [
        json.loads(out) for (out, _), w in zip(outputs, workers, strict=True) if w.returncode == 0
    ]

    study = optuna.load_study(study_name="shared-search", storage=stores["OPTUNA_STORAGE"])
    assert sorted(t.number for t in study.trials) == list(range(6))  # none lost or duplicated
    assert {t.state for t in study.trials} <= {
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    }
    client = MlflowClient(tracking_uri=stores["MLFLOW_TRACKING_URI"])
    parents = client.search_runs(
        [client.get_experiment_by_name("neuroweaver").experiment_id], "tags.kind = 'training'"
    )
    per_worker = [trial_numbers(client, parent.info.run_id) for parent in parents]
    assert sorted(len(numbers) for numbers in per_worker) == [3, 3]  # each ran its own share
    assert not per_worker[0] & per_worker[1]
    aliases = client.get_registered_model("neuroweaver").aliases
    assert str(aliases["champion"]) in {str(r["version"]) for r in results}
    mlflow.set_tracking_uri(mlflow.get_tracking_uri())  # leave this process's MLflow untouched


def trial_numbers(client: MlflowClient, parent_run_id: str) -> set[int]:
    parent = client.get_run(parent_run_id)
    nested = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=500
    )
    names = [run.info.run_name or "" for run in nested]
    return {int(name.removeprefix("trial-")) for name in names if name.startswith("trial-")}


def test_deliver_queue_from_several_api_processes_sends_each_message_once(
    postgres_databases: Callable[[str], str], tmp_path: Path
) -> None:
    from monitoring.store import durable
    from monitoring.store.engine import open_store

    store = postgres_databases("metrics")
    engine = open_store(store)
    total = 300
    record = tmp_path / "received.log"
    receiver = start_backend("receiver", delay_ms=50, workers=64, record=record)
    env = environment(
        DATABASE_URL=store,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        OPTUNA_STORAGE=f"sqlite:///{tmp_path / 'optuna.db'}",
        MODEL_SAVE_PATH=str(tmp_path / "models"),
        MODEL_RELOAD_INTERVAL="600",
        RELAYCORE_ENDPOINTS=f"receiver={receiver.url}",
        RELAYCORE_DELIVERY_POLL_S="0.1",
        RELAYCORE_DELIVERY_CONCURRENCY="16",
    )
    ports = [free_port(), free_port()]
    # One instance with two uvicorn workers and a second instance: three claimers on one queue.
    apis = [
        subprocess.Popen(
            [AUTOMATRIX, "serve", "--port", str(port), "--workers", str(n)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"api-{port}.log").open("wb"),
        )
        for port, n in zip(ports, (2, 1), strict=True)
    ]
    try:
        try:
            wait_for(lambda: all(ready(port) for port in ports), 120, 0.2)
        except AssertionError as exc:
            logs = "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("api-*.log")))
            raise AssertionError(f"the API processes did not all start:\n{logs}") from exc
        ids = {
            durable.enqueue(engine, {"id": i}, priority=i % 10, max_attempts=8)
            for i in range(total)
        }
        wait_for(
            lambda: len(keys(record)) >= total or any(a.poll() is not None for a in apis), 120, 0.2
        )
        wait_for(lambda: durable.counts(engine)["delivered"] == total, 30, 0.2)
        single = httpx.get(
            f"http://127.0.0.1:{ports[1]}/api/v2/relaycore/status", timeout=10
        ).json()
    finally:
        for api in apis:
            api.terminate()
        for api in apis:
            api.wait(timeout=30)
        receiver.kill()
    received = Counter(keys(record))
    assert set(received) == ids
    assert max(received.values()) == 1  # no message sent twice
    assert 0 < single["delivery"]["delivered"] < total  # the work was shared between instances


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def keys(record: Path) -> list[str]:
    return [line.split()[0] for line in record.read_text().splitlines()] if record.exists() else []
