"""`relaycore-policy@champion` in the API: loaded at start, swapped when the alias moves, and a
version that is not a valid set of knobs refused while the last good one keeps routing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient

from flows.relaycore_policy import EXPERIMENT, MODEL_NAME, PYFUNC_CODE, STATE_FILE
from flows.train import configure_mlflow
from monitoring.config import get_settings, reset
from monitoring.neuroweaver import registry
from routing import AdaptiveParams
from routing.tuning import state_of
from tests.support.polling import wait_for
from tests.support.relaycore import relay_environment

STATUS = "/api/v2/relaycore/status"


@pytest.fixture
def environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path
) -> Iterator[None]:
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "RELAYCORE_ENDPOINTS", "RELAYCORE_POLICY"):
        monkeypatch.delenv(name, raising=False)
    env = relay_environment(tmp_path, empty_mlflow_db) | {"MODEL_RELOAD_INTERVAL": "0.2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    yield
    reset()


def _champion(state: dict[str, Any]) -> str:
    with mlflow.start_run(experiment_id=configure_mlflow(get_settings(), EXPERIMENT)):
        version = registry.register_state(MODEL_NAME, state, PYFUNC_CODE, STATE_FILE)
    registry.record_decision(MODEL_NAME, version, True, {})
    return version


def _app() -> TestClient:
    from serving.app import create_app

    return TestClient(create_app())


def _routes_with(client: TestClient, version: str, **knobs: float) -> dict[str, Any]:
    """The status once `version` is loaded and its `knobs` route (they are applied just after
    the load, through RelayCore's shared desired state)."""

    def routing() -> bool:
        status = client.get(STATUS).json()
        params = status["adaptive_params"]
        return status["policy_model"]["version"] == version and all(
            params[name] == value for name, value in knobs.items()
        )

    wait_for(routing, 20)
    return client.get(STATUS).json()


@pytest.mark.usefixtures("environment")
def test_the_api_routes_with_the_champion_from_start_and_follows_the_alias() -> None:
    first = _champion(state_of(AdaptiveParams(decay_s=3.0, sample_size=4)))
    with _app() as client:
        status = _routes_with(client, first, decay_s=3.0)
        assert status["adaptive_params"]["decay_s"] == 3.0
        assert status["adaptive_params"]["sample_size"] == 4
        assert status["policy_model"]["source"] == f"{MODEL_NAME} v{first} (@champion)"
        second = _champion(state_of(AdaptiveParams(tie_share=0.4)))
        status = _routes_with(client, second, tie_share=0.4)
        assert status["adaptive_params"]["tie_share"] == 0.4
        assert status["adaptive_params"]["decay_s"] == AdaptiveParams().decay_s


@pytest.mark.usefixtures("environment")
def test_a_corrupt_champion_is_refused_and_the_last_good_knobs_keep_routing() -> None:
    good = _champion(state_of(AdaptiveParams(decay_s=3.0)))
    with _app() as client:
        _routes_with(client, good, decay_s=3.0)
        corrupt = _champion(state_of(AdaptiveParams()) | {"sample_size": 1})
        wait_for(lambda: "refused" in (client.get(STATUS).json()["policy_model"]["problem"] or ""))
        status = client.get(STATUS).json()
        assert f"version {corrupt} was refused" in status["policy_model"]["problem"]
        assert "sample_size must be at least 2" in status["policy_model"]["problem"]
        assert status["policy_model"]["version"] == good
        assert status["adaptive_params"]["decay_s"] == 3.0


@pytest.mark.usefixtures("environment")
def test_without_a_registered_policy_the_defaults_route_and_status_says_so() -> None:
    with _app() as client:
        status = client.get(STATUS).json()
    assert status["policy_model"]["version"] is None
    assert status["policy_model"]["source"].startswith("the knobs in the store")
    assert status["adaptive_params"] == state_of(AdaptiveParams())
