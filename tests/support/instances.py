"""`automatrix serve` instances as real processes, for the tests of several processes and workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.support.models import SAMPLE
from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.relaycore import ROOT

AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))
REDIS_URL = os.environ.get("AUTOMATRIX_TEST_REDIS", "redis://127.0.0.1:6379/0")
# Settings of the developer's shell that would change what these instances do.
FOREIGN = ("API_KEY", "ENVIRONMENT", "DEBUG", "REDIS_URL", "TRUSTED_PROXIES")
WS = "/api/v2/ws/ecosystem"


@dataclass
class Instance:
    """One `automatrix serve` (with its workers) on a free port of 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def component(self, name: str) -> dict[str, Any]:
        found = httpx.get(f"{self.base}/ai-ecosystem/status", timeout=10).json()
        return found["components"].get(name, {})  # type: ignore[no-any-return]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
        self.process.wait(timeout=30)


def mlflow_template(tmp_path_factory: Any) -> Path:
    """An MLflow SQLite store with its tables made and a small @champion, made once per session.

    Instances get a copy each. An empty store makes each process that opens it run MLflow's
    migrations, and several at once on one file wait on each other for many seconds.
    """
    folder = tmp_path_factory.getbasetemp() / "mlflow-template"
    db = folder / "mlflow.db"
    if not db.exists():
        folder.mkdir(exist_ok=True)
        _register_champion(folder / "building.db", folder / "artifacts")
        (folder / "building.db").rename(db)
    return db


def _register_champion(db: Path, artifacts: Path) -> None:
    import mlflow

    from monitoring.neuroweaver import registry
    from tests.support.models import NAME, make_model, metric_rows

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("instances", artifact_location=artifacts.as_uri())
        x = metric_rows(200)
        with mlflow.start_run(experiment_id=experiment):
            version = registry.register(make_model(x, 1), NAME, x)
        client.set_registered_model_alias(NAME, "champion", version)
    finally:
        mlflow.set_tracking_uri(previous)


def start_instance(
    folder: Path, name: str, template: Path, env: dict[str, str], workers: int = 1
) -> Instance:
    """Starts one instance in `folder` (its own copy of the MLflow store); does not wait for it."""
    mlflow_db = folder / f"mlflow-{name}.db"
    shutil.copy(template, mlflow_db)
    settings = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}",
        "OPTUNA_STORAGE": f"sqlite:///{folder / 'optuna.db'}",
        "MODEL_SAVE_PATH": str(folder / f"models-{name}"),
        "MODEL_RELOAD_INTERVAL": "600",
        **env,
    }
    full = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    full.update({**settings, "PYTHONPATH": str(ROOT)})
    port = free_port()
    log = folder / f"api-{name}.log"
    command = [AUTOMATRIX, "serve", "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=folder, env=full, stdout=sink, stderr=sink)
    return Instance(port, process, log, settings)


def logs(instances: list[Instance]) -> str:
    return "\n".join(f"--- {i.log.name}\n{i.log.read_text()[-2500:]}" for i in instances)


@dataclass
class Listener:
    """A WebSocket client of the live feed that keeps every message it receives, in a thread."""

    connection: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, instance: Instance) -> Listener:
        """Connects (a fresh connection each time) and waits for the first snapshot."""
        connection = connect(f"ws://127.0.0.1:{instance.port}{WS}", max_size=None, open_timeout=10)
        listener = cls(connection)
        threading.Thread(target=listener._read, daemon=True).start()
        wait_for(lambda: listener.events("snapshot"), 15)
        return listener

    def _read(self) -> None:
        try:
            for raw in self.connection:
                self.messages.append(json.loads(raw))
        except Exception:
            return

    @property
    def origin(self) -> str:
        """The process that serves this client, as its first snapshot names it."""
        first = self.events("snapshot")[0]["payload"]
        return str(first["components"]["event_broker"]["origin"])

    def events(self, kind: str, origin: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in list(self.messages)
            if m["type"] == kind and (origin is None or m.get("origin") == origin)
        ]

    def close(self) -> None:
        self.connection.close()


def push(instance: Instance, service: str, rows: int = 3) -> None:
    """Pushes `rows` minutes of one service's metrics (a `metrics` event), on a fresh connection."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=rows)
    samples = [
        {"service": service, "timestamp": (start + timedelta(minutes=i)).isoformat(), **SAMPLE}
        for i in range(rows)
    ]
    response = httpx.post(f"{instance.base}/api/v2/metrics", json={"samples": samples}, timeout=10)
    response.raise_for_status()


def services(listener: Listener, origin: str | None = None) -> list[str]:
    """The service of every sample in the `metrics` events the listener received."""
    return [
        s["service"] for m in listener.events("metrics", origin) for s in m["payload"]["samples"]
    ]
