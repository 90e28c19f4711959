"""`automatrix up`: every process of the platform, started in order and stopped together."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import httpx
from sqlalchemy.engine import make_url

from serving.cli import ports
from serving.cli.flowruns import cancel_in_flight
from serving.cli.supervisor import Supervisor, say
from serving.cli.supervisor import run as supervise
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
    """Blocks until Ctrl-C, SIGTERM or a child that keeps crashing, then stops everything it
    started. Exits 2 before starting anything when a port is taken, 1 after giving up."""
    refuse_taken_ports(settings)
    env = _child_env(settings)
    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    supervisor = Supervisor(env)
    prefect_up = False

    def start() -> None:
        nonlocal prefect_up
        _start_prefect(settings, supervisor)
        prefect_up = True
        _start_the_rest(settings, env, supervisor, seed)

    def before_stop() -> None:
        if prefect_up:  # the runs can be cancelled only while the server answers
            _cancel_quietly()

    status = supervise(supervisor, start, before_stop)
    if status:
        raise SystemExit(status)


def _child_env(settings: ServingSettings) -> dict[str, str]:
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
    # The Prefect server's own database lives with the project's data unless told otherwise.
    env.setdefault("PREFECT_HOME", str(Path("data/prefect").resolve()))
    return env


def refuse_taken_ports(settings: ServingSettings) -> None:
    """Exits 2, one line per port, before anything starts when a port `up` needs is taken."""
    wanted = {"PREFECT_PORT": settings.prefect_port, "MLFLOW_PORT": settings.mlflow_port}
    if importlib.util.find_spec("fastapi") is not None:  # the API is started only when installed
        wanted["API_PORT"] = settings.api_port
    problems = ports.taken(settings.host, wanted)
    for line in problems:
        say(line)
    if problems:
        raise SystemExit(2)


def _start_prefect(settings: ServingSettings, supervisor: Supervisor) -> None:
    command = ["server", "start", "--host", settings.host, "--port", str(settings.prefect_port)]
    supervisor.start("prefect server", [_bin("prefect"), *command])
    wait_for(f"http://{settings.host}:{settings.prefect_port}/api/health", 180, supervisor)


def _start_the_rest(
    settings: ServingSettings, env: dict[str, str], supervisor: Supervisor, seed: bool
) -> None:
    supervisor.start("mlflow ui", _mlflow_command(settings))
    deploy(env)
    set_training_schedules(active=settings.enable_ml_training)
    supervisor.start("prefect worker", [_bin("prefect"), "worker", "start", "--pool", WORK_POOL])
    if _api_available():
        supervisor.start("api", [_bin("automatrix"), "serve"])
        _connect_webhook(settings, env["MLFLOW_WEBHOOK_SECRET"], supervisor)
    if seed and settings.enable_ml_training:
        seed_if_empty(settings)
    _announce(settings)


def _cancel_quietly() -> None:
    try:
        cancelled = cancel_in_flight(WORK_POOL)
    except Exception as exc:  # the stop goes on: the children must not outlive `up`
        say(f"could not cancel the flow runs ({exc})")
        return
    if cancelled:
        say(f"cancelled {len(cancelled)} flow run(s): {', '.join(cancelled)}")


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
