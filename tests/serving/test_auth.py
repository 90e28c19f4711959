"""The API key: mutating requests need it when it is set; reads never do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from monitoring.config import reset
from serving.settings import get_settings
from tests.support.models import SAMPLE

KEY = "s3cret-key"


@pytest.fixture
def locked(champion: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from serving.app import create_app

    monkeypatch.setenv("API_KEY", KEY)
    reset()
    with TestClient(create_app()) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v2/neuroweaver/predict"),
        ("post", "/api/v2/metrics"),
        ("post", "/api/v2/neuroweaver/train"),
        ("post", "/api/v2/neuroweaver/models/1/promote"),
        ("post", "/api/v2/neuroweaver/models/1/rollback"),
        ("put", "/api/v2/neuroweaver/models/1/aliases/champion"),
    ],
)
def test_mutate_without_key_is_401(locked: TestClient, method: str, path: str) -> None:
    response = getattr(locked, method)(path, json=SAMPLE)
    assert response.status_code == 401
    assert response.json()["detail"] == "missing API key: send it in the X-API-Key header"


def test_mutate_with_wrong_key_is_401(locked: TestClient) -> None:
    response = locked.post("/api/v2/neuroweaver/models/1/promote", headers={"X-API-Key": "nope"})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid API key"


def test_mutate_with_key_header_or_bearer_is_allowed(locked: TestClient) -> None:
    by_header = locked.post("/api/v2/neuroweaver/predict", json=SAMPLE, headers={"X-API-Key": KEY})
    by_bearer = locked.post(
        "/api/v2/neuroweaver/predict", json=SAMPLE, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert by_header.status_code == 200 and by_bearer.status_code == 200


def test_read_without_key_is_allowed(locked: TestClient) -> None:
    for path in ("/health", "/api/v2/neuroweaver/models", "/api/v2/ecosystem/status", "/metrics"):
        assert locked.get(path).status_code == 200, path


def test_start_production_without_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, api_settings
) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ENVIRONMENT", "production")
    reset()
    with pytest.raises(ValidationError, match="requires API_KEY"):
        get_settings()


def test_cors_allows_configured_origin(champion: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.app import create_app

    monkeypatch.setenv("CORS_ORIGINS", "https://ops.example.com")
    reset()
    with TestClient(create_app()) as client:
        allowed = client.get("/health", headers={"Origin": "https://ops.example.com"})
        other = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example.com"
    assert "access-control-allow-origin" not in other.headers
