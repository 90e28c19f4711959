"""`automatrix up`: every process of the platform, started in order and stopped together."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
from sqlalchemy.engine import make_url

from serving.neuroweaver.signatures import MLFLOW_LOCAL_WEBHOOKS, WEBHOOK_PATH
from serving.settings import ServingSettings

WORK_POOL = "automatrix"
SEED_TRAINING = {"trials": 6, "max_epochs": 8, "window_days": 3.0, "timeout_s": 300.0}
TRAINING_DEPLOYMENTS = ("neuroweaver-train/daily", "capacity-forecaster-train/daily-capacity")
SEED_CAPACITY = {"window_days": 3.0}  # all the seed holds: two days to choose on, one to judge
SEED_TRAININGS = (
    ("first training", TRAINING_DEPLOYMENTS[0], SEED_TRAINING),
    ("first capacity forecaster", TRAINING_DEPLOYMENTS[1], SEED_CAPACITY),
)


@dataclass
class Supervisor:
    """Starts child processes in their own process groups and stops them all on exit."""

    env: dict[str, str]
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, command: Sequence[str]) -> None:
        print(f"[automatrix] starting {name}: {' '.join(command)}", flush=True)
        process = subprocess.Popen(list(command), env=self.env, start_new_session=True)
        self.children.append((name, process))

    def check(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}")

    def stop(self, grace: float = 15.0) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                print(f"[automatrix] stopping {name}", flush=True)
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_for(url: str, timeout: float, supervisor: Supervisor) -> None:
    """Waits until `url` answers 2xx, failing early if a child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _bin(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def _mlflow_command(settings: ServingSettings) -> list[str]:
    # The UI's server shows the artifacts where the flows, opening the same store, put them.
    artifacts = settings.artifact_root() or (Path("mlruns") / "artifacts").resolve().as_uri()
    backend = settings.mlflow_tracking_uri
    if backend.startswith("sqlite:///"):
        database = make_url(backend).database or ""
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    return [
        _bin("mlflow"),
        "server",
        "--backend-store-uri",
        backend,
        "--default-artifact-root",
        artifacts,
        "--host",
        settings.host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
    ]


def deploy(env: dict[str, str]) -> None:
    """Creates the process work pool and applies every deployment in prefect.yaml."""
    prefect = _bin("prefect")
    subprocess.run(
        [prefect, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
        env=env,
        check=True,
    )
    subprocess.run([prefect, "--no-prompt", "deploy", "--all"], env=env, check=True)


def set_training_schedules(active: bool) -> None:
    """Pauses the training deployments (their schedules stop) or resumes them, so that
    ENABLE_ML_TRAINING=false stops scheduled training too, not only the API's endpoint."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in TRAINING_DEPLOYMENTS:
            deployment = client.read_deployment_by_name(name)
            if active:
                client.resume_deployment(deployment.id)
            else:
                client.pause_deployment(deployment.id)
    if not active:
        names = ", ".join(TRAINING_DEPLOYMENTS)
        print(f"[automatrix] ENABLE_ML_TRAINING=false: paused {names}", flush=True)


def seed_if_empty(settings: ServingSettings) -> None:
    """On an empty store: backfill three days of simulated metrics, then start the first trainings."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from sqlalchemy.orm import Session

    from flows.ingest import ingest_flow
    from monitoring.store.engine import open_store
    from monitoring.store.metrics import count_samples

    with Session(open_store(settings.database_url)) as session:
        if count_samples(session) > 0:
            return
    print("[automatrix] empty store: ingesting three days of simulated metrics", flush=True)
    ingest_flow(source="simulator")
    for what, deployment, parameters in SEED_TRAININGS:
        run = cast(FlowRun, run_deployment(deployment, parameters=parameters, timeout=0))
        print(f"[automatrix] {what}: {settings.prefect_ui_url}/runs/flow-run/{run.id}", flush=True)


def run_platform(settings: ServingSettings, seed: bool = True) -> None:
    """Blocks until Ctrl-C or a child's death, then stops everything it started."""
    api_url = f"http://{settings.host}:{settings.prefect_port}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PYTHONUNBUFFERED": "1",
        # Nothing leaves the machine: Prefect's telemetry would try to reach the internet.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # The MLflow server tells the API at once when @champion moves (serving/neuroweaver/webhooks.py).
        **MLFLOW_LOCAL_WEBHOOKS,
        "MLFLOW_WEBHOOK_SECRET": _webhook_secret(settings),
    }
    os.environ["PREFECT_API_URL"] = api_url
    # The Prefect server's own database lives with the project's data unless told otherwise.
    env.setdefault("PREFECT_HOME", str(Path("data/prefect").resolve()))
    supervisor = Supervisor(env)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        supervisor.start(
            "prefect server",
            [
                _bin("prefect"),
                "server",
                "start",
                "--host",
                settings.host,
                "--port",
                str(settings.prefect_port),
            ],
        )
        wait_for(f"{api_url}/health", 180, supervisor)
        supervisor.start("mlflow ui", _mlflow_command(settings))
        deploy(env)
        set_training_schedules(active=settings.enable_ml_training)
        supervisor.start(
            "prefect worker", [_bin("prefect"), "worker", "start", "--pool", WORK_POOL]
        )
        if _api_available():
            supervisor.start("api", [_bin("automatrix"), "serve"])
            _connect_webhook(settings, env["MLFLOW_WEBHOOK_SECRET"], supervisor)
        if seed and settings.enable_ml_training:
            seed_if_empty(settings)
        _announce(settings)
        while True:
            supervisor.check()
            time.sleep(2)
    except KeyboardInterrupt:
        print("\n[automatrix] Ctrl-C: stopping", flush=True)
    finally:
        supervisor.stop()


def _webhook_secret(settings: ServingSettings) -> str:
    configured = settings.mlflow_webhook_secret
    return configured.get_secret_value() if configured else secrets.token_urlsafe(32)


def _connect_webhook(settings: ServingSettings, secret: str, supervisor: Supervisor) -> None:
    """Registers the alias webhook on the MLflow server; without it, the API still polls."""
    from serving.neuroweaver.signatures import ensure_webhook

    mlflow_url = f"http://{settings.host}:{settings.mlflow_port}"
    hook = f"http://{settings.host}:{settings.api_port}{WEBHOOK_PATH}"
    try:
        wait_for(f"{mlflow_url}/health", 120, supervisor)
        ensure_webhook(mlflow_url, hook, secret)
    except Exception as exc:  # a missing webhook only makes reloads wait for the poll
        print(
            f"[automatrix] MLflow webhook not registered ({exc}); the API polls the registry",
            flush=True,
        )
        return
    print(
        f"[automatrix] MLflow tells the API when @{settings.model_alias} moves ({hook})", flush=True
    )


def _api_available() -> bool:
    try:
        import serving.app  # noqa: F401
    except ImportError:
        return False
    return True


def _announce(settings: ServingSettings) -> None:
    print(
        f"[automatrix] Prefect UI {settings.prefect_ui_url} | MLflow UI {settings.mlflow_ui_url}"
        f" | API http://{settings.host}:{settings.api_port}/docs  (Ctrl-C stops everything)",
        flush=True,
    )
