"""MLflow's alias webhook: a moved @champion is served at once, and only signed deliveries count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from monitoring.config import reset
from serving.neuroweaver.signatures import MLFLOW_LOCAL_WEBHOOKS, sign
from tests.support.live import LiveServer
from tests.support.models import NAME, SAMPLE, Registry, set_champion
from tests.support.net import free_port
from tests.support.polling import wait_for

HOOK = "/api/v2/neuroweaver/mlflow-webhook"
PREDICT = "/api/v2/neuroweaver/predict"
SECRET = "webhook-secret-for-tests"
KEY = "api-key-for-webhook-tests"


def delivery(
    body: dict, secret: str = SECRET, sent_at: float | None = None, delivery_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and the headers MLflow sends with it."""
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time() if sent_at is None else sent_at))
    delivery_id = delivery_id or str(uuid.uuid4())
    return raw, {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": sign(secret, delivery_id, timestamp, raw),
    }


def alias_event(version: str, name: str = NAME, alias: str = "champion") -> dict:
    return {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-11-26T08:00:00Z",
        "data": {"name": name, "alias": alias, "version": version},
    }


@pytest.fixture
def hooked(champion: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with a webhook secret and a poll interval too long to matter in a test."""
    from serving.app import create_app

    monkeypatch.setenv("MLFLOW_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("MODEL_RELOAD_INTERVAL", "600")
    monkeypatch.setenv("API_KEY", KEY)
    reset()
    with TestClient(create_app()) as client:
        yield client


def served_version(client: TestClient) -> str:
    return client.post(PREDICT, json=SAMPLE, headers={"X-API-Key": KEY}).json()["model_version"]


def test_our_signature_is_the_one_mlflow_sends() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert sign("k", "id-1", "1700000000", b'{"a": 1}') == _generate_hmac_signature(
        "k", "id-1", "1700000000", '{"a": 1}'
    )


def test_signed_alias_event_swaps_the_champion_without_waiting_for_the_poll(
    hooked: TestClient, model_registry: Registry
) -> None:
    new = model_registry.good[1]
    set_champion(new)
    raw, headers = delivery(alias_event(new))
    answer = hooked.post(HOOK, content=raw, headers=headers)  # no API key: the signature counts
    assert answer.status_code == 202 and answer.json()["reloading"] is True
    wait_for(lambda: served_version(hooked) == new, timeout=15)


def test_a_replayed_delivery_is_acted_on_once(hooked: TestClient, model_registry: Registry) -> None:
    raw, headers = delivery(alias_event(model_registry.good[1]))
    assert hooked.post(HOOK, content=raw, headers=headers).json()["reloading"] is True
    again = hooked.post(HOOK, content=raw, headers=headers)
    assert again.status_code == 202 and again.json() == {
        "reloading": False,
        "detail": "this delivery was already handled",
    }


@pytest.mark.parametrize(
    ("secret", "sent_at", "reason"),
    [
        ("another-secret", None, "does not match MLFLOW_WEBHOOK_SECRET"),
        (SECRET, time.time() - 3600, "more than 300 s old"),
    ],
    ids=["forged", "stale"],
)
def test_forged_or_stale_delivery_is_401_and_changes_nothing(
    hooked: TestClient,
    champion: str,
    model_registry: Registry,
    secret: str,
    sent_at: float | None,
    reason: str,
) -> None:
    set_champion(model_registry.good[1])
    raw, headers = delivery(alias_event(model_registry.good[1]), secret=secret, sent_at=sent_at)
    answer = hooked.post(HOOK, content=raw, headers=headers)
    assert answer.status_code == 401 and reason in answer.json()["detail"]
    time.sleep(0.5)
    assert served_version(hooked) == champion


def test_events_about_another_model_or_alias_are_ignored(hooked: TestClient) -> None:
    for event in (
        alias_event("2", name="other-model"),
        alias_event("2", alias="challenger"),
        {"entity": "model_version", "action": "created", "data": {"name": NAME}},
    ):
        raw, headers = delivery(event)
        answer = hooked.post(HOOK, content=raw, headers=headers)
        assert answer.status_code == 202 and answer.json()["reloading"] is False


def test_signed_body_that_is_not_an_event_is_422(hooked: TestClient) -> None:
    raw = b"not json"
    _, headers = delivery({})
    headers["X-MLflow-Signature"] = sign(
        SECRET, headers["X-MLflow-Delivery-Id"], headers["X-MLflow-Timestamp"], raw
    )
    assert hooked.post(HOOK, content=raw, headers=headers).status_code == 422


def test_unsigned_call_is_an_operator_reload_that_needs_the_api_key(
    hooked: TestClient, model_registry: Registry
) -> None:
    assert hooked.post(HOOK).status_code == 401
    new = model_registry.good[1]
    set_champion(new)
    answer = hooked.post(HOOK, headers={"X-API-Key": KEY})
    assert answer.status_code == 202 and answer.json()["reloading"] is True
    wait_for(lambda: served_version(hooked) == new, timeout=15)


def test_signed_delivery_without_a_configured_secret_is_403(client: TestClient) -> None:
    raw, headers = delivery(alias_event("2"))
    answer = client.post(HOOK, content=raw, headers=headers)
    assert answer.status_code == 403 and "MLFLOW_WEBHOOK_SECRET" in answer.json()["detail"]


@pytest.fixture
def mlflow_server(api_settings, champion: str, tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on the test's registry, allowed to call webhooks on 127.0.0.1."""
    port = free_port()
    env = {**os.environ, **MLFLOW_LOCAL_WEBHOOKS}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            api_settings.mlflow_tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=(tmp_path / "mlflow.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/health"), timeout=90, interval=0.5)
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def webhook_env(api_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("MODEL_RELOAD_INTERVAL", "600")
    reset()


@pytest.mark.slow
def test_alias_moved_through_a_real_mlflow_server_is_served_within_seconds(
    webhook_env: None, live_server: LiveServer, mlflow_server: str, model_registry: Registry
) -> None:
    from mlflow import MlflowClient

    from serving.neuroweaver.signatures import ensure_webhook

    hook_url = f"http://{live_server.url}{HOOK}"
    first = ensure_webhook(mlflow_server, hook_url, "an-old-secret")
    assert ensure_webhook(mlflow_server, hook_url, SECRET) == first  # re-keyed, not duplicated
    new = model_registry.good[1]
    MlflowClient(tracking_uri=mlflow_server).set_registered_model_alias(NAME, "champion", new)
    predict = f"http://{live_server.url}{PREDICT}"
    wait_for(lambda: httpx.post(predict, json=SAMPLE).json()["model_version"] == new, timeout=20)
