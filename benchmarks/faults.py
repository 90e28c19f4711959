"""Scripted fault scenarios with assertions, each against real processes on 127.0.0.1.

    .venv/bin/python benchmarks/faults.py [--only postgres|mlflow|trainer]

- postgres: the metric store on PostgreSQL; under load, the server is stopped
  (`pg_ctlcluster ... stop`), then started again. While it is down, store endpoints answer 503
  (never 500) and predictions go on; afterwards the same API process recovers fully.
  This stops the machine's shared PostgreSQL for a few seconds: do not run it while tests use it.
  It is always restarted (finally).
- mlflow: the API reads the registry through `mlflow server`; the server is killed; predictions
  go on with the loaded champion.
- trainer: a training worker is SIGKILLed mid-search; @champion does not move; a second worker
  continues the same Optuna study, and @champion moves only if its complete training wins.

Covered by tests instead: a routed endpoint killed mid-load (tests/serving/test_relaycore_e2e.py)
and the API SIGKILLed with async messages in flight (same file).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_bench import free_port, register_model, wait_ready  # noqa: E402
from benchmarks.stack import AUTOMATRIX, local_stack, start_api, stop  # noqa: E402

SAMPLE = {
    "cpu_usage": 85.0,
    "memory_usage": 70.0,
    "network_latency": 200.0,
    "error_rate": 3.0,
    "request_count": 2000.0,
}
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pg_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=60,
    )


def pg_up() -> bool:
    from sqlalchemy import create_engine, text

    try:
        with create_engine(ADMIN).connect() as connection:
            connection.execute(text("select 1"))
        return True
    except Exception:
        return False


def push(base: str, minute: int) -> int:
    at = (datetime.now(UTC) - timedelta(minutes=minute % 600)).replace(second=0, microsecond=0)
    body = {"samples": [{"service": "faults", "timestamp": at.isoformat(), **SAMPLE}]}
    return httpx.post(f"{base}/api/v2/metrics", json=body, timeout=10).status_code


def scenario_postgres() -> dict[str, object]:
    if subprocess.run(["pgrep", "-f", "pytest"], capture_output=True).returncode == 0:
        raise SystemExit("pytest is running: it may use PostgreSQL; run this scenario later")
    from sqlalchemy import create_engine, text

    name = f"automatrix_faults_{os.getpid()}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    phases: dict[str, Counter[int]] = {"before": Counter(), "down": Counter(), "after": Counter()}
    predictions: Counter[int] = Counter()
    try:
        with local_stack(database_url=url) as stack:
            base = stack.base_url
            pid = stack.api.pid
            for i in range(50):
                phases["before"][push(base, i)] += 1
            pg_cluster("stop")
            try:
                deadline = time.monotonic() + 8
                i = 0
                while time.monotonic() < deadline:
                    phases["down"][push(base, 100 + i)] += 1
                    predictions[
                        httpx.post(
                            f"{base}/api/v2/neuroweaver/predict", json=SAMPLE, timeout=10
                        ).status_code
                    ] += 1
                    i += 1
                ready_down = httpx.get(f"{base}/ready", timeout=10).status_code
                health_down = httpx.get(f"{base}/health", timeout=10).status_code
            finally:
                pg_cluster("start")
            started = time.monotonic()
            while not pg_up() and time.monotonic() - started < 60:
                time.sleep(0.5)
            recovered_after = None
            while time.monotonic() - started < 60:
                if push(base, 300) == 200:
                    recovered_after = round(time.monotonic() - started, 1)
                    break
                time.sleep(0.5)
            for i in range(50):
                phases["after"][push(base, 400 + i)] += 1
            ready_after = httpx.get(f"{base}/ready", timeout=10).status_code
            same_process = stack.api.poll() is None and stack.api.pid == pid
    finally:
        if not pg_up():
            pg_cluster("start")
        with suppress(Exception), admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert phases["before"] == {200: 50}, phases
    assert set(phases["down"]) == {503}, phases  # clear 503s, never a 500
    assert set(predictions) == {200}, predictions
    assert (ready_down, health_down) == (503, 200)
    assert recovered_after is not None and phases["after"] == {200: 50} and ready_after == 200
    assert same_process
    return {
        "pushes": {k: dict(v) for k, v in phases.items()},
        "predictions_while_down": dict(predictions),
        "ready_while_down": ready_down,
        "recovered_s_after_restart": recovered_after,
        "api_restarted": False,
    }


def scenario_mlflow() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="automatrix-mlflow-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "DATABASE_URL": f"sqlite:///{root / 'automatrix.db'}",
            "OPTUNA_STORAGE": f"sqlite:///{root / 'optuna.db'}",
            "MODEL_SAVE_PATH": str(root / "models"),
            "MODEL_RELOAD_INTERVAL": "1",
            "ENABLE_ML_TRAINING": "false",
            # Fail fast when the registry is down instead of MLflow's minutes of retries.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        }
        register_model(env)
        port = free_port()
        mlflow_server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                env["MLFLOW_TRACKING_URI"],
                "--artifacts-destination",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", mlflow_server, timeout=120)
            env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
            api_port = free_port()
            api = start_api(env, api_port, root / "api.log")
            base = f"http://127.0.0.1:{api_port}"
            try:
                before = httpx.post(
                    f"{base}/api/v2/neuroweaver/predict", json=SAMPLE, timeout=10
                ).json()
                stop(mlflow_server)  # type: ignore[arg-type]
                statuses: Counter[int] = Counter()
                versions = set()
                deadline = time.monotonic() + 10  # ten reload intervals without a registry
                while time.monotonic() < deadline:
                    response = httpx.post(
                        f"{base}/api/v2/neuroweaver/predict", json=SAMPLE, timeout=10
                    )
                    statuses[response.status_code] += 1
                    versions.add(response.json().get("model_version"))
                try:
                    models: int | str = httpx.get(
                        f"{base}/api/v2/neuroweaver/models", timeout=30
                    ).status_code
                except httpx.TimeoutException:
                    models = "timeout"
            finally:
                stop(api)
        finally:
            stop(mlflow_server)  # type: ignore[arg-type]
    assert set(statuses) == {200} and versions == {before["model_version"]}, (statuses, versions)
    assert models in (503, "timeout")  # the listing needs the registry; predictions do not
    return {
        "predictions_after_kill": dict(statuses),
        "served_version": before["model_version"],
        "registry_listing_while_down": models,
    }


def scenario_trainer() -> dict[str, object]:
    import optuna
    from mlflow import MlflowClient

    from monitoring.sources.simulator import simulate
    from monitoring.store import ingestion
    from monitoring.store.engine import open_store

    with tempfile.TemporaryDirectory(prefix="automatrix-trainer-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"sqlite:///{root / 'automatrix.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "OPTUNA_STORAGE": f"sqlite:///{root / 'optuna.db'}",
            "MODEL_SAVE_PATH": str(root / "models"),
        }
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        ingestion.store_batch(
            open_store(env["DATABASE_URL"]), list(simulate(end - timedelta(days=2), end).samples)
        )
        base = [AUTOMATRIX, "train", "--window-days", "3", "--max-epochs", "3"]
        first = json.loads(
            subprocess.run(
                [*base, "--trials", "2"],
                env=env,
                cwd=root,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
        champion = str(client.get_registered_model("neuroweaver").aliases["champion"])
        study = "faults-search"
        victim = subprocess.Popen(
            [*base, "--trials", "200", "--study-name", study],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def trials() -> int:
            try:
                return len(
                    optuna.load_study(study_name=study, storage=env["OPTUNA_STORAGE"]).trials
                )
            except Exception:
                return 0

        deadline = time.monotonic() + 180
        while trials() < 3 and time.monotonic() < deadline and victim.poll() is None:
            time.sleep(0.5)
        killed_at = trials()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        versions_after_kill = len(client.search_model_versions("name='neuroweaver'"))
        champion_after_kill = str(client.get_registered_model("neuroweaver").aliases["champion"])
        second = json.loads(
            subprocess.run(
                [*base, "--trials", "3", "--study-name", study],
                env=env,
                cwd=root,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        final = str(client.get_registered_model("neuroweaver").aliases["champion"])
        total = trials()
    assert champion == str(first["version"]) and killed_at >= 3
    assert champion_after_kill == champion and versions_after_kill == 1  # nothing half-registered
    assert total >= killed_at + 3  # the study went on from where the killed worker left it
    assert final == (str(second["version"]) if second["promoted"] else champion)
    return {
        "champion_before": champion,
        "trials_when_killed": killed_at,
        "champion_after_kill": champion_after_kill,
        "study_trials_after_second_worker": total,
        "second_worker_promoted": second["promoted"],
        "champion_final": final,
    }


SCENARIOS = {"postgres": scenario_postgres, "mlflow": scenario_mlflow, "trainer": scenario_trainer}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    failed = False
    for name in args.only or list(SCENARIOS):
        started = time.monotonic()
        try:
            outcome = SCENARIOS[name]()
            print(
                json.dumps({name: "PASS", "seconds": round(time.monotonic() - started), **outcome}),
                flush=True,
            )
        except AssertionError as exc:
            failed = True
            print(json.dumps({name: "FAIL", "reason": str(exc)[:2000]}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
