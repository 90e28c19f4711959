"""`POST` and `GET /api/v2/ai/incidents` on the real app: a recorded incident is stored, listed
with `"source": "recorded"`, refused with a 422 when it is malformed, and needs the API key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from monitoring.config import reset
from monitoring.store.engine import open_store
from monitoring.store.incidents import list_incidents
from serving.settings import ServingSettings

URL = "/api/v2/ai/incidents"
GOOD = {
    "service": "checkout",
    "start": "2026-12-01T10:00:00Z",
    "end": "2026-12-01T10:20:00+00:00",
    "description": "payments timed out",
}


def test_post_incident_stores_it_and_answers_201_with_the_record(
    client: TestClient, api_settings: ServingSettings
) -> None:
    response = client.post(URL, json=GOOD)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] > 0 and body["source"] == "recorded"
    assert body["service"] == "checkout" and body["description"] == "payments timed out"
    stored = list_incidents(open_store(api_settings.database_url), source="recorded")
    assert [(r.service, r.start.minute, r.end.minute) for r in stored] == [("checkout", 0, 20)]


def test_get_incidents_lists_only_recorded_ones_with_their_source(client: TestClient) -> None:
    client.post(URL, json=GOOD)
    client.post(URL, json={**GOOD, "service": "auth", "description": None})
    listed = client.get(URL).json()
    assert listed["count"] == 2
    assert {i["service"] for i in listed["incidents"]} == {"checkout", "auth"}
    assert {i["source"] for i in listed["incidents"]} == {"recorded"}
    assert client.get(URL, params={"service": "auth"}).json()["count"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {**GOOD, "end": "2026-12-01T09:00:00Z"},  # end before start
        {**GOOD, "severity": "high"},  # unknown field
        {**GOOD, "start": "2026-12-01T10:00:00"},  # naive: no time zone
        {**GOOD, "start": "yesterday-ish"},
        {**GOOD, "service": ""},
        {"service": "checkout", "start": GOOD["start"]},  # no end
    ],
)
def test_post_incident_with_bad_input_is_422_and_stores_nothing(
    client: TestClient, api_settings: ServingSettings, body: dict[str, object]
) -> None:
    assert client.post(URL, json=body).status_code == 422
    assert list_incidents(open_store(api_settings.database_url)) == []


@pytest.fixture
def locked(champion: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from serving.app import create_app

    monkeypatch.setenv("API_KEY", "incident-key")
    reset()
    with TestClient(create_app()) as client:
        yield client


def test_post_incident_needs_the_api_key_when_one_is_set(locked: TestClient) -> None:
    assert locked.post(URL, json=GOOD).status_code == 401
    ok = locked.post(URL, json=GOOD, headers={"X-API-Key": "incident-key"})
    assert ok.status_code == 201
