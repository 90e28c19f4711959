"""Models through the MLflow server: a trainer and an API that share nothing but its URL.

The trainer and the API each run in their own working directory with their own HOME; the one
thing they have in common is MLFLOW_TRACKING_URI, a real `mlflow server` on PostgreSQL whose
artifacts it proxies (`--artifacts-destination`). The model travels through that server only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient

from monitoring.neuroweaver.model import WEIGHTS_FILE
from monitoring.samples import METRICS
from tests.support.models import SAMPLE, metric_rows
from tests.support.net import free_port
from tests.support.polling import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))
# What a host's environment could carry over from this test process; each host sets its own.
# The session's MLflow server is shared with other tests: this one's model has a name of its own.
MODEL = "neuroweaver-two-hosts"
INHERITED = (
    "MODEL_NAME",
    "DATABASE_URL",
    "OPTUNA_STORAGE",
    "MODEL_SAVE_PATH",
    "API_KEY",
    "ENVIRONMENT",
)


def host_environment(home: Path, **values: str) -> dict[str, str]:
    """A host of its own: its HOME, no store or MLflow setting of this process, and `values`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in INHERITED and not key.startswith(("MLFLOW_", "PREFECT_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    return {
        **env,
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        **values,
    }


def write_labelled_rows(path: Path, n: int = 300) -> None:
    """Labelled rows for `automatrix train --data`: the score falls with the error rate."""
    x = metric_rows(n, seed=11)
    y = np.clip(1 - x[:, 3] / 100, 0, 1)
    rows = [
        {**dict(zip(METRICS, row.tolist(), strict=True)), "performance_score": float(t)}
        for row, t in zip(x, y, strict=True)
    ]
    path.write_text(json.dumps(rows))


def train_on_host(host: Path, tracking_uri: str, prefect_api_url: str) -> dict[str, object]:
    """`automatrix train` in `host` on labelled rows of its own, with a tiny search budget."""
    write_labelled_rows(host / "rows.json")
    env = host_environment(
        host / "home",
        MLFLOW_TRACKING_URI=tracking_uri,
        DATABASE_URL=f"sqlite:///{host / 'metrics.db'}",
        OPTUNA_STORAGE=f"sqlite:///{host / 'optuna.db'}",
        PREFECT_API_URL=prefect_api_url,
        MODEL_NAME=MODEL,
    )
    command = [AUTOMATRIX, "train", "--data", "rows.json", "--trials", "1", "--max-epochs", "2"]
    done = subprocess.run(
        command, cwd=host, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_train_and_serve_on_two_hosts_share_the_model_through_the_mlflow_server(
    prefect_harness: None, mlflow_server_url: tuple[str, Path], tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    url, destination = mlflow_server_url
    trainer, api = tmp_path / "trainer", tmp_path / "api"
    trainer.mkdir()
    api.mkdir()
    trained = train_on_host(trainer, url, str(PREFECT_API_URL.value()))
    version = str(trained["version"])
    assert trained["promoted"] is True

    port = free_port()
    env = host_environment(
        api / "home",
        MLFLOW_TRACKING_URI=url,
        DATABASE_URL=f"sqlite:///{api / 'metrics.db'}",
        MODEL_RELOAD_INTERVAL="600",
        MODEL_NAME=MODEL,
    )
    with (api / "api.log").open("wb") as log:
        process = subprocess.Popen(
            [AUTOMATRIX, "serve", "--port", str(port)],
            cwd=api,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: process.poll() is not None or answers(f"{base}/ready"), 120, 0.2)
        except AssertionError as exc:
            raise AssertionError((api / "api.log").read_text()[-3000:]) from exc
        ready = httpx.get(f"{base}/ready", timeout=10)
        answer = httpx.post(f"{base}/api/v2/neuroweaver/predict", json=SAMPLE, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert ready.status_code == 200, ready.text
    assert ready.json()["model_version"] == version
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    assert 0 <= answer.json()["performance_score"] <= 1
    # The experiment's artifacts are the server's to place, and the model's files are on its disk.
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("neuroweaver")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert list(destination.rglob(WEIGHTS_FILE))
    # Each host has model files only in its cache of the versions it loaded (MODEL_SAVE_PATH):
    # the trainer loaded the new version to judge it, the API to serve it.
    for host in (trainer, api):
        cache = host / "mlruns" / "models"
        assert all(path.is_relative_to(cache) for path in host.rglob(WEIGHTS_FILE))
        loaded = list((cache / MODEL).glob(f"{version}-*"))
        assert len(loaded) == 1 and list(loaded[0].rglob(WEIGHTS_FILE))


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
