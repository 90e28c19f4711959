"""Helpers for RelayCore's API tests: real backend processes and the real app on temporary stores."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKEND = ROOT / "benchmarks" / "relay_backend.py"
PYTHON = sys.executable


@dataclass
class Backend:
    name: str
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/work"

    def control(self, **changes: object) -> None:
        httpx.post(
            f"http://127.0.0.1:{self.port}/__control", json=changes, timeout=5
        ).raise_for_status()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def start_backend(
    name: str,
    *,
    delay_ms: float = 0.0,
    workers: int = 64,
    fail_status: int | None = None,
    record: Path | None = None,
) -> Backend:
    """A backend process on a random port of 127.0.0.1, ready when this returns."""
    command = [
        PYTHON,
        str(BACKEND),
        "--name",
        name,
        "--delay-ms",
        str(delay_ms),
        "--workers",
        str(workers),
    ]
    if fail_status is not None:
        command += ["--fail-status", str(fail_status)]
    if record is not None:
        command += ["--record", str(record)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PORT "), f"backend did not start: {line!r}"
    backend = Backend(name, process, int(line.split()[1]))
    _wait_until(lambda: _accepts(backend.port), 15)
    return backend


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


wait_until = _wait_until


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow store, copied per test (creating one takes a second)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def relay_environment(tmp_path: Path, mlflow_db: Path, **relaycore: object) -> dict[str, str]:
    """Variables for an API on temporary stores, with RELAYCORE_<NAME> for each keyword."""
    shutil.copy(mlflow_db, tmp_path / "mlflow.db")
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'automatrix.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OPTUNA_STORAGE": f"sqlite:///{tmp_path / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(tmp_path / "models"),
        "MODEL_RELOAD_INTERVAL": "600",
        "RELAYCORE_DELIVERY_POLL_S": "0.2",
    }
    env.update({f"RELAYCORE_{k.upper()}": str(v) for k, v in relaycore.items()})
    return env


@pytest.fixture
def relay_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path
) -> Iterator[Callable[..., object]]:
    """`relay_app(ENDPOINTS=..., API_KEY=..., queue_capacity=...)` -> a started TestClient."""
    from fastapi.testclient import TestClient

    from flows.ingest import store_engine
    from serving.relaycore.config import get_relaycore_settings
    from serving.settings import get_settings

    clients: list[TestClient] = []

    def build(
        endpoints: dict[str, str] | None = None, api_key: str | None = None, **relaycore: object
    ) -> TestClient:
        from serving.app import create_app

        for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "RELAYCORE_ENDPOINTS", "RELAYCORE_POLICY"):
            monkeypatch.delenv(name, raising=False)
        for key, value in relay_environment(tmp_path, empty_mlflow_db, **relaycore).items():
            monkeypatch.setenv(key, value)
        if endpoints:
            monkeypatch.setenv(
                "RELAYCORE_ENDPOINTS", ",".join(f"{k}={v}" for k, v in endpoints.items())
            )
        if api_key:
            monkeypatch.setenv("API_KEY", api_key)
        for cache in (get_settings, get_relaycore_settings, store_engine):
            cache.cache_clear()
        client = TestClient(create_app())
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)
    for cache in (get_settings, get_relaycore_settings, store_engine):
        cache.cache_clear()


def api_process(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """The API as its own process (uvicorn on the app factory), as `automatrix serve` runs it."""
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG"):
        full.pop(name, None)
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        "serving.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=full, stdout=sink, stderr=sink)
    _wait_until(lambda: _ready(port) or process.poll() is not None, 90, 0.2)
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def _ready(port: int) -> bool:
    try:
        return (
            httpx.get(f"http://127.0.0.1:{port}/api/v2/relaycore/status", timeout=2).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


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
