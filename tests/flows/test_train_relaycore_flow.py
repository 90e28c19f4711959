"""The RelayCore policy's lifecycle: a real Prefect flow run reads the calls a live API routed to
real backends, searches on the earlier ones, judges on the later ones, and registers the knobs
in a real MLflow store with the calls' lineage; the console script says why it cannot train."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client

from flows.relaycore_policy import MODEL_NAME
from flows.train_relaycore import train_relaycore_flow
from monitoring.config import reset
from tests.serving.test_cli import _run, prefect_api  # noqa: F401  (the fixture)
from tests.support.live import LiveServer, serve
from tests.support.net import free_port
from tests.support.relaycore import Backend, relay_environment

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
MESSAGES = 80


@pytest.fixture
def routed_api(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backends: Callable[..., Backend],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """An API on a real socket that has routed MESSAGES calls to a fast and a slow backend."""
    from serving.app import create_app

    empty = tmp_path_factory.mktemp("empty-mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{empty}").search_experiments()
    fast, slow = backends("fast", delay_ms=2), backends("slow", delay_ms=12)
    for name in ("API_KEY", "ENVIRONMENT", "DEBUG", "RELAYCORE_POLICY", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    env = relay_environment(tmp_path, empty) | {
        "RELAYCORE_ENDPOINTS": f"fast={fast.url},slow={slow.url}"
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    server: LiveServer
    with serve(create_app()) as server:
        url = f"http://{server.url}"
        for i in range(MESSAGES):
            sent = httpx.post(f"{url}/api/v2/relaycore/message", json={"payload": {"id": i}})
            assert sent.status_code == 200, sent.text
        yield url
    reset()


async def _artifact(key: str) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        (artifact,) = await client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return str(artifact.data)


def test_training_registers_the_policy_judged_on_calls_the_search_never_saw(
    routed_api: str,
) -> None:
    result = train_relaycore_flow(trials=3, timeout_s=60, api_url=routed_api)
    version = MlflowClient().get_model_version(MODEL_NAME, result["version"])
    assert version.tags["promotion.promoted"] == str(result["promoted"]).lower()
    assert version.tags["promotion.reason"] == result["reason"]
    evidence = json.loads(version.tags["promotion.evidence"])
    assert evidence["candidate"] == result["candidate"]
    assert evidence["defaults"] == result["defaults"] and evidence["champion"] is None
    assert ("champion" in version.aliases) == result["promoted"]
    assert "challenger" not in version.aliases
    run = MlflowClient().get_run(result["mlflow_run_id"])
    assert run.data.params["search_calls"] == str(int(MESSAGES * 0.7))
    assert run.data.params["validation_calls"] == str(MESSAGES - int(MESSAGES * 0.7))
    (dataset,) = run.inputs.dataset_inputs
    source = json.loads(dataset.dataset.source)["tags"]
    assert source["rows"] == str(MESSAGES) and source["sha256"] == dataset.dataset.digest
    assert routed_api in source["observed_by"]
    trials = MlflowClient().search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(trials) == result["trials"] == 3


def test_the_flow_run_leaves_the_decision_as_a_markdown_artifact(routed_api: str) -> None:
    found = train_relaycore_flow(trials=2, timeout_s=60, api_url=routed_api)
    markdown = asyncio.run(_artifact("relaycore-policy-training"))
    assert f"**Decision:** version {found['version']}" in markdown
    assert "| defaults |" in markdown and "| candidate |" in markdown


def test_cli_training_without_a_reachable_api_fails_with_the_reason(
    tmp_path: Path,
    prefect_api: dict[str, str],  # noqa: F811
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = prefect_api | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'automatrix.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "ORCHESTRATOR_API_URL": url,
    }
    result = _run("train", "--model", "relaycore-policy", "--trials", "2", env=env)
    assert result.returncode == 1
    assert f"the API at {url} is unreachable" in result.stderr
    assert (
        not (tmp_path / "mlflow.db").exists()
        or not MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).search_registered_models()
    )


def test_cli_training_refuses_options_the_policy_does_not_take() -> None:
    result = _run("train", "--model", "relaycore-policy", "--window-days", "3")
    assert result.returncode == 2 and "takes no --data or --window-days" in result.stderr
