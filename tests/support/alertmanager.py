"""A real Prometheus Alertmanager (Debian's binary) on a free port, and a tiny JSON receiver."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.net import free_port
from tests.support.polling import wait_for

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
# Every alert goes to a receiver that sends nothing: the tests read Alertmanager's API.
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'


def require_alertmanager() -> str:
    found = shutil.which(ALERTMANAGER)
    if found is None:
        pytest.skip(f"{ALERTMANAGER} is not installed (apt-get install prometheus-alertmanager)")
    return found


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    return False


@contextlib.contextmanager
def alertmanager(root: Path, port: int | None = None) -> Iterator[str]:
    """Runs Alertmanager on 127.0.0.1 (clustering off, its storage under `root`); its base URL."""
    binary = require_alertmanager()
    root.mkdir(parents=True, exist_ok=True)
    (root / "alertmanager.yml").write_text(CONFIG)
    port = port or free_port()
    command = [binary, f"--config.file={root / 'alertmanager.yml'}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    command += [f"--storage.path={root / 'data'}"]
    with (root / "alertmanager.log").open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _ready(url), 20, 0.05)
        if server.poll() is not None:
            raise RuntimeError((root / "alertmanager.log").read_text()[-2000:])
        yield url
    finally:
        server.terminate()
        server.wait(10)


def active_alerts(url: str, **labels: str) -> list[dict[str, Any]]:
    """Alertmanager's active alerts whose labels match `labels` exactly."""
    matchers = [f'{name}="{value}"' for name, value in labels.items()]
    response = httpx.get(f"{url}/api/v2/alerts", params={"filter": matchers}, timeout=5)
    response.raise_for_status()
    return list(response.json())


class Receiver:
    """An HTTP server on a free port that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
