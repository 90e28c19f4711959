"""RelayCore end to end with real processes: a backend killed under load, an API killed mid-delivery."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.relaycore import Backend, api_process, relay_environment

MESSAGE = "/api/v2/relaycore/message"


@pytest.mark.slow
def test_send_messages_while_a_backend_is_killed_loses_none(
    relay_app: Callable[..., Any], backends: Callable[..., Backend], tmp_path: Path
) -> None:
    started = [backends(name, delay_ms=20) for name in ("a", "b", "c")]
    client = relay_app(endpoints={b.name: b.url for b in started})
    total = 300

    async def load() -> list[tuple[int, int, Any]]:
        transport = httpx.ASGITransport(app=client.app)
        results: list[tuple[int, int, Any]] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:

            async def one(i: int) -> None:
                if i == total // 3:
                    started[0].kill()  # mid-load: calls in flight to it fail and are retried
                response = await api.post(MESSAGE, json={"payload": {"id": i}})
                results.append((i, response.status_code, response.json()))

            semaphore = asyncio.Semaphore(16)

            async def bounded(i: int) -> None:
                async with semaphore:
                    await one(i)

            await asyncio.gather(*(bounded(i) for i in range(total)))
        return results

    results = client.portal.call(load)
    assert len(results) == total
    assert Counter(status for _, status, _ in results) == {200: total}
    assert all(body["body"]["id"] == i for i, _, body in results)
    served_after = {body["endpoint"] for i, _, body in results if i > total // 2}
    assert served_after <= {"b", "c"}
    status = client.get("/api/v2/relaycore/status").json()
    assert status["counters"]["retried"] >= 1 and status["counters"]["failed"] == 0


def keys_received(record: Path) -> list[str]:
    return [line.split()[0] for line in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.slow
def test_deliver_async_messages_after_api_is_killed_reaches_every_one(
    backends: Callable[..., Backend], tmp_path: Path, empty_mlflow_db: Path
) -> None:
    record = tmp_path / "received.log"
    # Slow enough (60 x 0.4 s over 4 workers) that the kill lands mid-delivery on a busy machine.
    receiver = backends("receiver", delay_ms=400, workers=4, record=record)
    port = free_port()
    env = relay_environment(
        tmp_path,
        empty_mlflow_db,
        lease_s=2,
        max_concurrency=4,
        delivery_concurrency=8,
        delivery_backoff_s=0.2,
    )
    env["RELAYCORE_ENDPOINTS"] = f"receiver={receiver.url}"
    log = tmp_path / "api.log"
    api = api_process(env, port, log)
    base = f"http://127.0.0.1:{port}"
    total = 60
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            ids = [
                client.post(MESSAGE, json={"payload": {"id": i}, "async": True}).json()["id"]
                for i in range(total)
            ]
        wait_for(lambda: len(keys_received(record)) >= 8, 30)
        api.send_signal(signal.SIGKILL)  # messages are in flight at the receiver right now
        api.wait(timeout=10)
        delivered_before = set(keys_received(record))
        assert len(delivered_before) < total
        api = api_process(env, port, log)
        wait_for(lambda: set(ids) <= set(keys_received(record)), 60, 0.2)
        wait_for(lambda: _states(base, ids) == {"delivered": total}, 15, 0.2)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=20)
    received = keys_received(record)
    assert set(received) == set(ids)  # every accepted message arrived, deduplicated by key
    assert len(received) - total <= 16  # duplicates only from the killed process's claims


def _states(base: str, ids: list[str]) -> Counter[str]:
    return Counter(
        httpx.get(f"{base}/api/v2/relaycore/messages/{i}", timeout=10).json()["state"] for i in ids
    )
