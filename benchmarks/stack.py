"""A local AutoMatrix for the load, soak, fault and fuzz scripts: all on 127.0.0.1, all temporary.

`local_stack()` registers one NeuroWeaver model as @champion in a temporary MLflow store, starts a
RelayCore backend (benchmarks/relay_backend.py) and `automatrix serve` on free ports, and stops
everything on exit. The metric store is a temporary SQLite file unless `database_url` is given.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.serving_bench import free_port, register_model, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
AUTOMATRIX = str(Path(sys.executable).with_name("automatrix"))


@dataclass
class Stack:
    base_url: str
    api: subprocess.Popen[bytes]
    backend_url: str
    env: dict[str, str]
    root: Path
    log: Path

    def rss_mb(self) -> float:
        """Resident memory of the API process (and its uvicorn workers), in MB."""
        total = 0
        for pid in _tree(self.api.pid):
            with suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024.0

    def restart_api(self) -> None:
        stop(self.api)
        self.api = start_api(self.env, int(self.base_url.rsplit(":", 1)[1]), self.log)


def _tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            for child in (task / "children").read_text().split():
                found += _tree(int(child))
    return found


def start_api(
    env: dict[str, str], port: int, log: Path, workers: int = 1
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [AUTOMATRIX, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_ready(f"http://127.0.0.1:{port}/ready", process, timeout=180)
    return process


@contextmanager
def local_stack(database_url: str | None = None, workers: int = 1, **extra: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="automatrix-stack-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url or f"sqlite:///{root / 'automatrix.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "OPTUNA_STORAGE": f"sqlite:///{root / 'optuna.db'}",
            "MODEL_SAVE_PATH": str(root / "models"),
            "ENABLE_ML_TRAINING": "false",
            "LIVE_INTERVAL": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }
        for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "PREFECT_API_URL"):
            env.pop(name, None)
        register_model(env)
        backend = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "relay_backend.py"),
                "--name",
                "local",
                "--delay-ms",
                "2",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        assert backend.stdout is not None
        backend_url = f"http://127.0.0.1:{backend.stdout.readline().split()[1]}/work"
        env["RELAYCORE_ENDPOINTS"] = f"local={backend_url}"
        port = free_port()
        log = root / "api.log"
        try:
            api = start_api(env, port, log, workers)
        except Exception:
            sys.stderr.write(log.read_text()[-3000:])
            stop(backend)  # type: ignore[arg-type]
            raise
        stack = Stack(f"http://127.0.0.1:{port}", api, backend_url, env, root, log)
        try:
            yield stack
        finally:
            stop(stack.api)
            stop(backend)  # type: ignore[arg-type]


def get_json(url: str) -> object:
    return httpx.get(url, timeout=10).json()
