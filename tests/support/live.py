"""The app on a real socket (uvicorn in a thread), as the `live_server` fixtures start it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from tests.support.polling import wait_for


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server


@contextmanager
def serve(app: Any) -> Iterator[LiveServer]:
    """Serves `app` on a free 127.0.0.1 port until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30)
    try:
        yield LiveServer(f"127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
