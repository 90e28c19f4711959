"""Security over the whole app: every mutating route needs the key, expensive ones are rate limited.

Covered elsewhere: reads without the key, the Bearer form and production without a key
(test_auth.py); body and batch size limits (test_predict.py: `..._is_413`); RelayCore forwarding
only to registered http(s) endpoints (test_relaycore_api.py: `test_send_message_reaches_only_
registered_endpoints`, `test_add_endpoint_non_http_url_is_refused`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from monitoring.config import reset
from serving.http.ratelimit import EXPENSIVE, TokenBuckets
from serving.http.security import MUTATING

KEY = "walk-every-route-key"


@pytest.fixture
def locked(champion: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from serving.app import create_app

    monkeypatch.setenv("API_KEY", KEY)
    monkeypatch.setenv("ENABLE_ML_TRAINING", "false")
    reset()
    with TestClient(create_app()) as client:
        yield client


def every_route(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    """(path template, methods) of every HTTP operation, through included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route.path, set(route.methods)
        elif hasattr(route, "effective_route_contexts"):  # FastAPI >= 0.150 keeps includes lazy
            for context in route.effective_route_contexts():
                yield context.path, set(context.methods or ())


def mutating_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, concrete path) for every mutating operation, path parameters filled in."""
    found = []
    for template, methods in every_route(client.app.routes):  # type: ignore[attr-defined]
        path = re.sub(r"\{[^}]+\}", "x1", template)
        found += [(method, path) for method in sorted(methods & MUTATING)]
    return sorted(set(found))


def test_walk_every_mutating_route_without_key_is_401(locked: TestClient) -> None:
    routes = mutating_routes(locked)
    prefixes = {path.split("/")[3] for _, path in routes if path.startswith("/api/v2/")}
    assert len(routes) >= 15 and {"neuroweaver", "relaycore", "ai", "metrics"} <= prefixes
    for method, path in routes:
        missing = locked.request(method, path, json={})
        wrong = locked.request(method, path, json={}, headers={"X-API-Key": "not-" + KEY})
        assert (missing.status_code, wrong.status_code) == (401, 401), (method, path)


def test_walk_every_mutating_route_with_key_is_not_401(locked: TestClient) -> None:
    for method, path in mutating_routes(locked):
        response = locked.request(method, path, json={}, headers={"X-API-Key": KEY})
        assert response.status_code not in (401, 500), (method, path, response.text)


@pytest.mark.parametrize(("method", "path"), sorted(EXPENSIVE))
def test_post_expensive_endpoint_over_rate_is_429_with_retry_after(
    champion: str, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    from serving.app import create_app

    monkeypatch.setenv("RATE_LIMIT_BURST", "2")
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "1")
    monkeypatch.setenv("ENABLE_ML_TRAINING", "false")  # the call is counted, no training starts
    reset()
    with TestClient(create_app()) as client:
        first = [client.request(method, path, json={}).status_code for _ in range(2)]
        refused = client.request(method, path, json={})
        other = client.get("/api/v2/relaycore/status")
    assert 429 not in first and 500 not in first
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 200  # only the expensive endpoints are limited


def test_take_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_minute=6, burst=2, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") == 0.0  # each client has its own bucket
    now[0] = 10.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_openapi_documents_429_on_expensive_endpoints(locked: TestClient) -> None:
    paths = locked.get("/openapi.json").json()["paths"]
    for method, path in EXPENSIVE:
        assert "429" in paths[path][method.lower()]["responses"], path
