"""`automatrix up`: every process of the platform, started in order and stopped together, and
the live demo around it: the demo fleet (serving/fleet/) against the API, read by the scheduled
ingestion (the scrape source) and healed for real (HEALING_MODE=auto).

What `up` sets for its children it sets only where the user gave nothing (environment or .env),
and it says so in its start-up lines.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar, cast

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from monitoring.config import (
    AlertSettings,
    OrchestratorSettings,
    get_alert_settings,
    get_orchestrator_settings,
)
from serving.cli import ports
from serving.cli.flowruns import cancel_in_flight
from serving.cli.supervisor import Child, StartFailed, Supervisor, last_lines, say
from serving.cli.supervisor import run as supervise
from serving.neuroweaver.signatures import MLFLOW_LOCAL_WEBHOOKS, WEBHOOK_PATH
from serving.settings import ServingSettings

T = TypeVar("T")
WORK_POOL = "automatrix"
# Start-up timeouts, seconds: a loaded 2-core host takes about 20 s for each server.
PREFECT_READY_S = 180.0
MLFLOW_READY_S = 120.0
API_READY_S = 180.0
DEPLOY_TIMEOUT_S = 300.0
ANY_ADDRESS = ("0.0.0.0", "::", "")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SEED_TRAINING = {"trials": 6, "max_epochs": 8, "window_days": 3.0, "timeout_s": 300.0}
TRAINING_DEPLOYMENTS = (
    "neuroweaver-train/daily",
    "capacity-forecaster-train/daily-capacity",
    "failure-risk-train/daily-failure-risk",
    "relaycore-policy-train/daily-relaycore-policy",  # not seeded: it needs observed calls
)
SEED_WINDOW = {
    "window_days": 3.0
}  # all the seed holds (capacity: two days to choose, one to judge)
SEED_TRAININGS = (
    ("first training", TRAINING_DEPLOYMENTS[0], SEED_TRAINING),
    ("first capacity forecaster", TRAINING_DEPLOYMENTS[1], SEED_WINDOW),
    ("first failure risk", TRAINING_DEPLOYMENTS[2], SEED_WINDOW),
)


@dataclass(frozen=True)
class Demo:
    """The settings `up` gives its children (`values`), and those it leaves as the user gave
    them (`kept`), both as variable=value, for the environment and the start-up lines."""

    fleet: bool
    chaos: bool
    values: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)


def local_api_url(settings: ServingSettings) -> str:
    """The API `up` starts, as its own children reach it (127.0.0.1 when it binds every address)."""
    host = "127.0.0.1" if settings.host in ANY_ADDRESS else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.api_port}"


DEMO_WATCH_SECONDS = "10"  # the API drains on RelayCore's evidence within seconds


def demo_settings(
    settings: ServingSettings,
    orchestrator: OrchestratorSettings,
    alerts: AlertSettings,
    fleet: bool,
    chaos: bool,
) -> Demo:
    """What `up` sets: ORCHESTRATOR_API_URL (its API) always; with the fleet, the scrape source
    (when no source is configured), HEALING_MODE=auto and the replica watch
    (HEALING_WATCH_SECONDS). A variable the user set is kept."""
    values: dict[str, str] = {}
    kept: dict[str, str] = {}
    given = settings.model_fields_set | orchestrator.model_fields_set
    if "orchestrator_api_url" in given:
        kept["ORCHESTRATOR_API_URL"] = str(orchestrator.orchestrator_api_url)
    else:
        values["ORCHESTRATOR_API_URL"] = local_api_url(settings)
    if fleet:
        sources = {"ingest_source", "prometheus_url", "scrape_targets"}
        if given & sources:
            kept["INGEST_SOURCE"] = settings.scheduled_source()
        else:
            values["INGEST_SOURCE"] = "scrape"
        if "healing_mode" in given:
            kept["HEALING_MODE"] = orchestrator.healing_mode.value
        else:
            values["HEALING_MODE"] = "auto"
        if "healing_watch_seconds" in given:
            kept["HEALING_WATCH_SECONDS"] = f"{orchestrator.healing_watch_seconds:g}"
        else:
            values["HEALING_WATCH_SECONDS"] = DEMO_WATCH_SECONDS
    for name, value in (
        ("ALERTMANAGER_URL", alerts.alertmanager_url),
        ("ALERT_WEBHOOK_URL", alerts.alert_webhook_url),
    ):
        if value:
            kept[name] = value
    return Demo(fleet, chaos, values, kept)


def fleet_refusal(settings: ServingSettings) -> str | None:
    """Why the demo fleet cannot run beside this API (it talks to 127.0.0.1 only), or None."""
    if not _api_available():
        return "the API is not installed"
    if settings.host not in ANY_ADDRESS + LOOPBACK:  # as serving.fleet.plan.require_loopback
        return f"HOST={settings.host} is not a loopback address; the fleet runs on 127.0.0.1 only"
    return None


def hide_password(value: str) -> str:
    """A URL's password as ***, so that the start-up lines never show a secret."""
    return re.sub(r"(://[^:/@\s]+:)[^@/\s]+@", r"\1***@", value)


def announce_demo(demo: Demo, orchestrator: OrchestratorSettings) -> None:
    """The start-up lines that say what `up` set, what it kept, and what that means."""
    pairs = " ".join(f"{k}={hide_password(v)}" for k, v in demo.values.items())
    if pairs:
        say(f"up sets for every child (export one to change it): {pairs}")
    if demo.kept:
        say(
            "kept as you set them: "
            + " ".join(f"{k}={hide_password(v)}" for k, v in demo.kept.items())
        )
    mode = demo.values.get("HEALING_MODE") or orchestrator.healing_mode.value
    if mode == "auto":
        say(
            f"healing acts (HEALING_MODE=auto): one action per service and kind (per replica"
            f" for drains) every {orchestrator.healing_rate_limit_minutes:g} min at most, each"
            " one in the audit at /api/v2/ai/actions"
        )
    if not {"ALERTMANAGER_URL", "ALERT_WEBHOOK_URL"} & demo.kept.keys():
        say("alerts are recorded at /api/v2/ai/alerts and sent nowhere (set ALERTMANAGER_URL)")


def url_answers(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers 2xx."""

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=2).is_success
        except httpx.HTTPError:
            return False

    return answers


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


def deploy(supervisor: Supervisor, cwd: Path | None = None) -> None:
    """Creates the process work pool and applies every deployment in prefect.yaml (of `cwd`),
    with the supervisor's environment. Their output goes to PREFECT_HOME/deploy.log; a failure
    raises StartFailed naming the command, its exit code, its last lines and that file."""
    prefect = _bin("prefect")
    log = Path(supervisor.env.get("PREFECT_HOME") or "data/prefect") / "deploy.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        for argv in (
            [prefect, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
            [prefect, "--no-prompt", "deploy", "--all"],
        ):
            _logged(supervisor, argv, cwd, out, log)
    say(f"applied prefect.yaml's deployments to the work pool {WORK_POOL} (output in {log})")


def _logged(
    supervisor: Supervisor, argv: list[str], cwd: Path | None, out: IO[str], log: Path
) -> None:
    shown = " ".join([Path(argv[0]).name, *argv[1:]])
    try:
        done = supervisor.run_once(argv, cwd, DEPLOY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StartFailed(f"`{shown}` did not finish within {DEPLOY_TIMEOUT_S:g} s") from None
    out.write(f"$ {shown}\n{done.stdout}")
    out.flush()
    if done.returncode != 0:
        said = last_lines(done.stdout.splitlines())
        raise StartFailed(
            f"`{shown}` failed with exit code {done.returncode}: {said or 'no output'}"
            f" (its whole output: {log})"
        )


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


def seed_if_empty(settings: ServingSettings, live: Sequence[str] = ()) -> None:
    """On an empty store: backfill three days of simulated metrics, then start the first trainings.
    The services in `live` (the demo fleet's) are not simulated: their history is their own."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from sqlalchemy.orm import Session

    from flows.ingest import ingest_flow
    from monitoring.sources.simulator import DEFAULT_SERVICES
    from monitoring.store.engine import open_store
    from monitoring.store.metrics import count_samples

    with Session(open_store(settings.database_url)) as session:
        if count_samples(session) > 0:
            return
    simulated = [s for s in DEFAULT_SERVICES if s not in live]
    print(
        f"[automatrix] empty store: ingesting three days of simulated {', '.join(simulated)}",
        flush=True,
    )
    ingest_flow(source="simulator", services=simulated)
    for what, deployment, parameters in SEED_TRAININGS:
        run = cast(FlowRun, run_deployment(deployment, parameters=parameters, timeout=0))
        print(f"[automatrix] {what}: {settings.prefect_ui_url}/runs/flow-run/{run.id}", flush=True)


def run_platform(
    settings: ServingSettings, seed: bool = True, fleet: bool = True, chaos: bool = True
) -> None:
    """Blocks until Ctrl-C, SIGTERM or a child that keeps crashing, then stops everything it
    started. Exits 2 before starting anything when a port is taken; 1 after giving up, or when
    a step of the start-up fails (one line says which, and where its output is)."""
    refuse_taken_ports(settings)
    refusal = fleet_refusal(settings) if fleet else None
    if refusal:
        say(f"no demo fleet: {refusal}")
    orchestrator, alerts = _settings_or_exit()
    demo = demo_settings(settings, orchestrator, alerts, fleet and not refusal, chaos)
    env = _child_env(settings, demo)
    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    supervisor = Supervisor(env)
    prefect_up = False

    def start() -> None:
        nonlocal prefect_up
        announce_demo(demo, orchestrator)
        prefect, api = _start_servers(settings, supervisor)
        if api is not None:
            _start_fleet(settings, supervisor, demo, api)
        health = f"http://{settings.host}:{settings.prefect_port}/api/health"
        supervisor.wait_ready(prefect, url_answers(health), PREFECT_READY_S, f"answer {health}")
        prefect_up = True
        _start_the_rest(settings, env, supervisor, seed, None if api is None else demo)

    def before_stop() -> None:
        if prefect_up:  # the runs can be cancelled only while the server answers
            _cancel_quietly()

    status = supervise(supervisor, start, before_stop)
    if status:
        raise SystemExit(status)


def _settings_or_exit() -> tuple[OrchestratorSettings, AlertSettings]:
    """The orchestrator's and the alerts' settings, or one line per bad variable and exit 2."""
    try:
        return get_orchestrator_settings(), get_alert_settings()
    except ValidationError as exc:
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            say(f"invalid setting {variable}: {error['msg']}")
        raise SystemExit(2) from None


def _child_env(settings: ServingSettings, demo: Demo) -> dict[str, str]:
    api_url = f"http://{settings.host}:{settings.prefect_port}/api"
    env = {
        **os.environ,
        **demo.values,
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
    if _api_available():  # the API is started only when installed
        wanted["API_PORT"] = settings.api_port
    problems = ports.taken(settings.host, wanted)
    for line in problems:
        say(line)
    if problems:
        raise SystemExit(2)


def _start_servers(settings: ServingSettings, supervisor: Supervisor) -> tuple[Child, Child | None]:
    """The Prefect server, MLflow and the API start together: none needs another to start,
    and their start-ups overlap (about 20 s each on a loaded 2-core host)."""
    command = ["server", "start", "--host", settings.host, "--port", str(settings.prefect_port)]
    prefect = supervisor.start("prefect server", [_bin("prefect"), *command])
    supervisor.start("mlflow ui", _mlflow_command(settings))
    api = supervisor.start("api", [_bin("automatrix"), "serve"]) if _api_available() else None
    return prefect, api


def _start_fleet(settings: ServingSettings, supervisor: Supervisor, demo: Demo, api: Child) -> None:
    """Waits for the API's /health, then starts the demo fleet against it (when it runs)."""
    health = f"{local_api_url(settings)}/health"
    supervisor.wait_ready(api, url_answers(health), API_READY_S, f"answer {health}")
    if demo.fleet:
        from serving.fleet.runner import fleet_command  # the fleet needs the API installed

        supervisor.start("fleet", fleet_command(local_api_url(settings), chaos=demo.chaos))


def _start_the_rest(
    settings: ServingSettings,
    env: dict[str, str],
    supervisor: Supervisor,
    seed: bool,
    demo: Demo | None,
) -> None:
    """`demo` is None without the API: no fleet then, and nothing to connect MLflow's webhook to."""
    deploy(supervisor)
    _step(
        "pausing or resuming the training schedules",
        lambda: set_training_schedules(active=settings.enable_ml_training),
    )
    supervisor.start("prefect worker", [_bin("prefect"), "worker", "start", "--pool", WORK_POOL])
    if demo is not None:
        _connect_webhook(settings, env["MLFLOW_WEBHOOK_SECRET"], supervisor)
    if seed and settings.enable_ml_training:
        live = _fleet_services() if demo is not None and demo.fleet else []
        _step("seeding the empty store", lambda: seed_if_empty(settings, live))
    _announce(settings)


def _fleet_services() -> list[str]:
    from serving.fleet.plan import service_names
    from serving.fleet.runner import FleetOptions

    return [name for name, _ in service_names(FleetOptions().services)]


def _step(what: str, call: Callable[[], T]) -> T:
    """Runs one step of the start-up; its failure becomes one line (StartFailed), no traceback."""
    try:
        return call()
    except StartFailed:
        raise
    except Exception as exc:
        raise StartFailed(f"{what} failed: {type(exc).__name__}: {exc}") from exc


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
    """Waits for the MLflow server, then registers the alias webhook on it; without the
    webhook, the API still polls."""
    from serving.neuroweaver.signatures import ensure_webhook

    mlflow_url = f"http://{settings.host}:{settings.mlflow_port}"
    hook = f"http://{settings.host}:{settings.api_port}{WEBHOOK_PATH}"
    mlflow = next(c for c in supervisor.children if c.name == "mlflow ui")
    health = f"{mlflow_url}/health"
    supervisor.wait_ready(mlflow, url_answers(health), MLFLOW_READY_S, f"answer {health}")
    try:
        ensure_webhook(mlflow_url, hook, secret)
    except Exception as exc:  # a missing webhook only makes reloads wait for the poll
        say(f"MLflow webhook not registered ({exc}); the API polls the registry")
        return
    say(f"MLflow tells the API when @{settings.model_alias} moves ({hook})")


def _api_available() -> bool:
    """Whether the API's dependencies are installed (an install without the extras runs the
    flows only); a broken import of the API itself is for `automatrix serve` to report."""
    return importlib.util.find_spec("fastapi") is not None


def _announce(settings: ServingSettings) -> None:
    print(
        f"[automatrix] Prefect UI {settings.prefect_ui_url} | MLflow UI {settings.mlflow_ui_url}"
        f" | API http://{settings.host}:{settings.api_port}/docs  (Ctrl-C stops everything)",
        flush=True,
    )
