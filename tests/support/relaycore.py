"""Helpers for RelayCore's API tests: real backend processes, and the API on temporary stores."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.polling import wait_for

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
    wait_for(lambda: _accepts(backend.port), 15)
    return backend


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


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
    wait_for(lambda: _ready(port) or process.poll() is not None, 90, 0.2)
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
