"""The live feed over a real socket: snapshots keep coming at the configured interval."""

from __future__ import annotations

import asyncio
import json

import pytest
import uvicorn
import websockets

from monitoring.config import reset
from serving.app import create_app
from serving.ecosystem.events import EventHub
from serving.settings import ServingSettings
from tests.support.net import free_port


def test_publish_event_with_number_keys_reaches_subscriber() -> None:
    hub = EventHub()
    subscription = hub.subscribe()
    hub.publish("routing", {"queue": {"by_priority": {0: 1, 9: 2}}})
    message = asyncio.run(subscription.get())
    assert json.loads(message or "{}")["payload"]["queue"]["by_priority"] == {"0": 1, "9": 2}


@pytest.mark.slow
def test_websocket_over_real_socket_receives_repeated_snapshots(
    settings: ServingSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_INTERVAL", "0.3")
    monkeypatch.setenv("RELAYCORE_STATUS_INTERVAL_S", "0.2")  # routing status joins the snapshots
    reset()
    port = free_port()

    async def scenario() -> list[str]:
        server = uvicorn.Server(
            uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/api/v2/ws/ecosystem", max_size=None
            ) as ws:
                kinds = []
                while kinds.count("snapshot") < 4:
                    kinds.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=5))["type"])
                return kinds
        finally:
            server.should_exit = True
            await serving

    kinds = asyncio.run(scenario())
    reset()
    assert kinds.count("snapshot") >= 4 and "routing" in kinds
