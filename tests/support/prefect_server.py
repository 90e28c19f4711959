"""A real `prefect server start` process of its own (its PREFECT_HOME, its SQLite database, no UI),
for what only the full server does: event triggers and automations."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.polling import wait_for

PREFECT = str(Path(sys.executable).with_name("prefect"))


def server_environment(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    return env | ({"PREFECT_API_URL": api_url} if api_url else {})


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """Starts the server on a free loopback port; yields its API URL; stops it."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("w")
    command = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, env=server_environment(home), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: server.poll() is not None or _healthy(url), 120, 0.5)
        assert server.poll() is None, (home / "server.log").read_text()[-3000:]
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
