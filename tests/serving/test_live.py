"""The live feed: WebSocket clients with bounded queues, immediate events, and SSE."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from tests.support.live import LiveServer
from tests.support.models import Registry, set_champion
from tests.support.polling import wait_for

WS = "/api/v2/ws/ecosystem"


def never_reading_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    host, port = url.split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET {WS} HTTP/1.1\r\nHost: {url}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert raw.recv(12) == b"HTTP/1.1 101"
    return raw


@pytest.mark.slow
def test_ws_two_clients_one_never_reading_other_gets_everything(live_server: LiveServer) -> None:
    state = live_server.server.config.app.state.automatrix
    stalled = never_reading_client(live_server.url)
    received: list[int] = []
    with connect(f"ws://{live_server.url}{WS}", max_size=None) as reader:
        assert json.loads(reader.recv(timeout=10))["type"] == "snapshot"
        wait_for(lambda: state.hub.subscriber_count == 2)

        def read() -> None:
            while len(received) < 300:
                message = json.loads(reader.recv(timeout=20))
                if message["type"] == "anomaly":
                    received.append(message["payload"]["n"])

        thread = threading.Thread(target=read)
        thread.start()
        padding = "x" * 64_000
        for n in range(300):
            state.hub.publish("anomaly", {"n": n, "padding": padding})
            time.sleep(0.004)
        thread.join(timeout=30)
        assert received == list(range(300))
        assert state.hub.dropped_clients == 1
        assert state.hub.subscriber_count == 1
    stalled.close()
    wait_for(lambda: state.hub.subscriber_count == 0)


def test_ws_disconnect_leaves_no_subscriber(client: TestClient) -> None:
    state = client.app.state.automatrix  # type: ignore[attr-defined]
    with client.websocket_connect(WS) as ws:
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot" and snapshot["payload"]["model_version"] == "1"
        assert state.hub.subscriber_count == 1
    wait_for(lambda: state.hub.subscriber_count == 0)


def test_ws_pushes_snapshots_at_interval_and_champion_at_once(
    client: TestClient, model_registry: Registry
) -> None:
    with client.websocket_connect(WS) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        assert ws.receive_json()["type"] == "snapshot"  # the steady tick (LIVE_INTERVAL=0.2 here)
        set_champion(model_registry.good[1])
        kinds = []
        while "champion" not in kinds:
            message = ws.receive_json()
            kinds.append(message["type"])
        assert message["payload"]["version"] == model_registry.good[1]


def test_sse_stream_sends_snapshot_then_events(live_server: LiveServer) -> None:
    state = live_server.server.config.app.state.automatrix
    events: list[str] = []
    with httpx.stream(
        "GET",
        f"http://{live_server.url}/api/v2/ecosystem/live",
        headers={"Accept": "text/event-stream"},
        timeout=10,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
                if events == ["snapshot"]:
                    state.hub.publish("breaker", {"endpoint": "a", "state": "open"})
            if "breaker" in events:
                break
    assert events[0] == "snapshot" and "breaker" in events
    wait_for(lambda: state.hub.subscriber_count == 0)
