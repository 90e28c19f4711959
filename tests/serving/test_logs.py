"""Structured logs: the request id follows a request (API, RelayCore, Prefect); no secret is logged."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from monitoring.config import reset
from serving.http.logs import JsonFormatter, redact, register_secrets
from serving.settings import get_settings
from tests.support.models import SAMPLE
from tests.support.polling import wait_for

PASSWORD = "Pg-Secr3t-Passw0rd"
API_KEY = "Key-Secr3t-Value-42"


def test_request_with_request_id_returns_it(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "req-abc.123"})
    fresh = client.get("/health")
    unsafe = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "req-abc.123"
    assert len(fresh.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_log_request_error_carries_request_id_as_json(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        client.get("/api/v2/ai/insights/nowhere-to-be-found", headers={"X-Request-ID": "trace-77"})
        client.post(
            "/api/v2/neuroweaver/predict",
            json={"cpu_usage": "NaN"},
            headers={"X-Request-ID": "trace-78"},
        )
    records = [r for r in caplog.records if r.name == "automatrix.request"]
    assert {getattr(r, "request_id", None) for r in records} >= {"trace-78"}
    line = json.loads(
        JsonFormatter().format(next(r for r in records if r.request_id == "trace-78"))
    )
    assert line["request_id"] == "trace-78" and line["level"] in ("info", "warning")
    assert "/api/v2/neuroweaver/predict -> 422" in line["message"]


@pytest.fixture
def header_receiver() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An endpoint on 127.0.0.1 that records the headers of each POST it receives."""
    seen: list[dict[str, str]] = []

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=15)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/in", seen
    server.should_exit = True
    thread.join(timeout=10)


def test_relay_message_forwards_request_id_to_endpoint(
    relay_app: Callable[..., Any],
    header_receiver: tuple[str, list[dict[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, seen = header_receiver
    client = relay_app(endpoints={"receiver": url})
    sync = client.post(
        "/api/v2/relaycore/message",
        json={"payload": {"n": 1}},
        headers={"X-Request-ID": "relay-sync-1"},
    )
    with caplog.at_level(logging.INFO):
        queued = client.post(
            "/api/v2/relaycore/message",
            json={"payload": {"n": 2}, "async": True},
            headers={"X-Request-ID": "relay-async-2"},
        )
    assert sync.status_code == 200 and queued.status_code == 202
    assert seen[0]["x-request-id"] == "relay-sync-1"
    message_id = queued.json()["id"]
    wait_for(lambda: any(h.get("idempotency-key") == message_id for h in seen), timeout=15)
    accepted = [r for r in caplog.records if message_id in r.getMessage()]
    assert accepted and accepted[0].request_id == "relay-async-2"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_train_via_api_tags_flow_run_with_request_id(
    prefect_harness: None, client: TestClient
) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    response = client.post(
        "/api/v2/neuroweaver/train",
        json={"trials": 1, "max_epochs": 1},
        headers={"X-Request-ID": "train-req-9"},
    )
    assert response.status_code == 202
    run_id = response.json()["flow_run_id"]

    async def read() -> Any:
        async with get_client() as prefect:
            return await prefect.read_flow_run(run_id)

    wait_for(lambda: asyncio.run(read()).state.is_final(), timeout=90, interval=0.5)
    assert "request-id:train-req-9" in asyncio.run(read()).tags


def test_redact_hides_url_passwords_and_registered_secrets() -> None:
    register_secrets([API_KEY])
    text = redact(f"postgresql+psycopg://app:{PASSWORD}@db:5432/x key={API_KEY} http://h:80/p")
    assert PASSWORD not in text and API_KEY not in text
    assert "postgresql+psycopg://app:***@db:5432/x" in text and "http://h:80/p" in text


def test_error_with_secret_settings_leaks_neither_password_nor_key(
    api_settings: Any,
    champion: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from serving.app import create_app

    # Port 1 refuses at once: every store access fails with a driver error.
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://automatrix:{PASSWORD}@127.0.0.1:1/m")
    monkeypatch.setenv("API_KEY", API_KEY)
    reset()
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG), TestClient(create_app()) as client:
        key = {"X-API-Key": API_KEY}
        logging.getLogger("probe").error("store at %s failed", get_settings().database_url)
        for method, path, body in (
            ("GET", "/ready", None),
            ("GET", "/api/v2/neuroweaver/status", None),
            ("POST", "/api/v2/metrics", {"service": "a", "samples": [SAMPLE]}),
            ("POST", "/api/v2/relaycore/message", {"payload": {}, "async": True}),
            ("GET", "/api/v2/relaycore/status", None),
            ("GET", "/api/v2/ai/anomalies", None),
            ("POST", "/api/v2/ai/autonomous-optimization", {}),
        ):
            response = client.request(method, path, json=body, headers=key)
            assert response.status_code in (200, 202, 422, 503), (path, response.text)
            texts.append(response.text)
            client.request(method, path, json=body, headers={"X-API-Key": "wrong-" + API_KEY})
    assert any(
        r.getMessage().startswith("store at postgresql+psycopg://automatrix:***@")
        for r in caplog.records
    )
    everything = "\n".join([caplog.text, *texts, *capfd.readouterr()])
    assert PASSWORD not in everything and API_KEY not in everything


def test_start_with_bad_database_url_names_no_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from serving.cli.commands import app

    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://u:{PASSWORD}@h:notaport/db")
    reset()
    result = CliRunner().invoke(app, ["serve"])
    reset()
    assert result.exit_code == 2 and "DATABASE_URL" in result.output
    assert PASSWORD not in result.output


@pytest.fixture
def uvicorn_access_logger() -> Iterator[logging.Logger]:
    """uvicorn's access logger, put back as it was afterwards."""
    logger = logging.getLogger("uvicorn.access")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield logger
    logger.handlers, logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def test_configure_logging_keeps_access_log_silent_when_uvicorn_silenced_it(
    uvicorn_access_logger: logging.Logger,
) -> None:
    from serving.http.logs import configure_logging

    uvicorn_access_logger.handlers, uvicorn_access_logger.propagate = [], False  # access_log=False
    configure_logging(get_settings())
    assert not uvicorn_access_logger.hasHandlers()  # uvicorn then logs no line per request


def test_configure_logging_routes_access_log_to_json_when_asked_for(
    uvicorn_access_logger: logging.Logger,
) -> None:
    from serving.http.logs import configure_logging

    uvicorn_access_logger.handlers = [logging.StreamHandler()]  # access_log=True
    uvicorn_access_logger.propagate = False
    configure_logging(get_settings())
    assert uvicorn_access_logger.handlers == [] and uvicorn_access_logger.propagate
    assert uvicorn_access_logger.hasHandlers()
