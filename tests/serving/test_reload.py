"""Hot reload: a new champion is checked, then swapped in while requests keep flowing."""

from __future__ import annotations

import asyncio
import time

import httpx
import mlflow
import pytest
from fastapi.testclient import TestClient

from tests.support.live import LiveServer
from tests.support.models import SAMPLE, Registry, set_champion
from tests.support.polling import wait_for

PREDICT = "/api/v2/neuroweaver/predict"


def served_version(client: TestClient) -> str:
    return client.post(PREDICT, json=SAMPLE).json()["model_version"]


async def _hammer(
    url: str, stop: asyncio.Event, seen: list[list[str]], failures: list[str]
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=10) as http:

        async def worker(mine: list[str]) -> None:
            while not stop.is_set():
                try:
                    response = await http.post(PREDICT, json=SAMPLE)
                    response.raise_for_status()
                    mine.append(response.json()["model_version"])
                except Exception as exc:
                    failures.append(repr(exc))

        await asyncio.gather(*(worker(mine) for mine in seen))


@pytest.mark.slow
def test_reload_new_champion_under_load_drops_no_request(
    live_server: LiveServer, model_registry: Registry
) -> None:
    old, new = model_registry.good
    seen: list[list[str]] = [[] for _ in range(8)]
    failures: list[str] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        load = asyncio.create_task(_hammer(live_server.url, stop, seen, failures))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(set_champion, new)
        deadline = time.monotonic() + 20
        while not all(mine and mine[-1] == new for mine in seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        stop.set()
        await load

    asyncio.run(scenario())
    assert failures == []
    for mine in seen:
        assert len(mine) > 20
        assert mine[0] == old and mine[-1] == new
        first_new = mine.index(new)
        assert set(mine[first_new:]) == {new}, "a request answered by the old model after the swap"


def test_reload_corrupt_version_is_refused_and_champion_stays(
    client: TestClient, model_registry: Registry
) -> None:
    old = model_registry.good[0]
    set_champion(model_registry.corrupt)
    wait_for(
        lambda: client.get(f"/api/v2/neuroweaver/models/{model_registry.corrupt}").json()["refused"]
    )
    refusal = client.get(f"/api/v2/neuroweaver/models/{model_registry.corrupt}").json()["refused"]
    assert "cannot be loaded" in refusal
    assert served_version(client) == old
    assert client.get("/ready").json() == {"ready": True, "model_version": old, "reasons": []}


def test_start_with_corrupt_champion_is_not_ready_with_reason(
    api_settings, model_registry: Registry
) -> None:
    from serving.app import create_app

    set_champion(model_registry.corrupt)
    with TestClient(create_app()) as client:
        ready = client.get("/ready")
        predict = client.post(PREDICT, json=SAMPLE)
    assert ready.status_code == 503
    assert f"version {model_registry.corrupt} was refused" in ready.json()["reasons"][0]
    assert predict.status_code == 503


def test_reload_registry_unreachable_keeps_last_good_model(
    client: TestClient, champion: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    state = client.app.state.automatrix  # type: ignore[attr-defined]
    mlflow.set_tracking_uri("http://127.0.0.1:9")  # nothing listens on the discard port
    checked = state.holder.last_check
    wait_for(
        lambda: state.holder.last_check != checked and state.holder.last_check is not None,
        timeout=20,
    )
    wait_for(lambda: state.holder.last_check > checked + 0.1, timeout=20)
    assert served_version(client) == champion
    assert client.get("/ready").status_code == 200
