"""Registry endpoints: versions with links, promotion and rollback by moving @champion."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.models import SAMPLE, Registry
from tests.support.polling import wait_for

MODELS = "/api/v2/neuroweaver/models"


def serving_version(client: TestClient) -> str:
    return client.post("/api/v2/neuroweaver/predict", json=SAMPLE).json()["model_version"]


def test_list_models_shows_versions_aliases_metrics_and_links(
    client: TestClient, model_registry: Registry
) -> None:
    body = client.get(MODELS).json()
    v1, v2 = model_registry.good
    assert body["champion_version"] == v1 == body["serving_version"]
    versions = {v["version"]: v for v in body["versions"]}
    assert set(versions) == {v1, v2, model_registry.corrupt}
    assert versions[v1]["aliases"] == ["champion"] and versions[v1]["serving"]
    assert versions[v2]["metrics"]["test_rmse"] > 0
    assert (
        versions[v2]["mlflow_ui_url"] == f"http://127.0.0.1:5000/#/models/neuroweaver/versions/{v2}"
    )


def test_show_model_unknown_version_is_404(client: TestClient) -> None:
    response = client.get(f"{MODELS}/999")
    assert response.status_code == 404
    assert "999" in response.json()["detail"]


def test_promote_version_moves_champion_and_serving_follows(
    client: TestClient, model_registry: Registry
) -> None:
    v1, v2 = model_registry.good
    response = client.post(f"{MODELS}/{v2}/promote")
    assert response.status_code == 200
    assert response.json() | {"note": ""} == {
        "name": "neuroweaver",
        "alias": "champion",
        "version": v2,
        "previous_version": v1,
        "note": "",
    }
    wait_for(lambda: serving_version(client) == v2)


def test_rollback_to_earlier_version_restores_it(
    client: TestClient, model_registry: Registry
) -> None:
    v1, v2 = model_registry.good
    client.put(f"{MODELS}/{v2}/aliases/champion")
    wait_for(lambda: serving_version(client) == v2)
    assert client.post(f"{MODELS}/{v1}/rollback").status_code == 200
    wait_for(lambda: serving_version(client) == v1)


def test_rollback_to_newer_version_is_409(client: TestClient, model_registry: Registry) -> None:
    response = client.post(f"{MODELS}/{model_registry.good[1]}/rollback")
    assert response.status_code == 409


def test_promote_unknown_version_is_404(client: TestClient) -> None:
    assert client.post(f"{MODELS}/999/promote").status_code == 404
