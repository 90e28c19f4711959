"""A real `mlflow server` with proxied artifacts, on a fresh PostgreSQL database and a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.postgres import POSTGRES_ADMIN_URL, postgres_reachable

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@contextlib.contextmanager
def fresh_database(purpose: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards; skips without PostgreSQL."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    name = f"automatrix_{purpose}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def mlflow_server(backend: str, root: Path) -> Iterator[str]:
    """Runs `mlflow server` on `backend` with its artifacts under `root/artifacts`; its URL.

    Clients upload and download artifacts through the server (`mlflow-artifacts:` URIs), so
    they need nothing but this URL."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "mlflow-server.log"
    command = [MLFLOW, "server", "--backend-store-uri", backend]
    command += ["--artifacts-destination", str(root / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _healthy(url), 120, 0.2)
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
