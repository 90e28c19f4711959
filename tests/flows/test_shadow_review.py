"""A new NeuroWeaver version in shadow: it wins offline, runs as @challenger on live predict
traffic the API files, and becomes @champion only when the paired test on the labelled requests
says it is better. On a real MLflow store, a real metric store and the real app."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from flows.orchestrate import orchestrate_flow
from flows.shadow_review import review
from monitoring.config import get_settings, reset
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.labels import label_frame
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel
from monitoring.neuroweaver.training import Hyperparameters, Split, train_model
from monitoring.samples import METRICS
from monitoring.store.engine import open_store
from monitoring.store.shadow import ShadowRequest, read_requests, record_requests
from serving.settings import ServingSettings
from tests.support.models import NAME, make_model
from tests.support.polling import wait_for

SERVICE = "checkout"
MINUTES = 240
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(minutes=MINUTES)


def _history() -> pd.DataFrame:
    """Latency swinging across its 250 ms objective every hour: the next minutes follow it."""
    rng = np.random.default_rng(3)
    minutes = np.arange(MINUTES)
    return pd.DataFrame(
        {
            "service": SERVICE,
            "timestamp": [START + timedelta(minutes=int(i)) for i in minutes],
            "cpu_usage": rng.uniform(30, 60, MINUTES),
            "memory_usage": rng.uniform(40, 60, MINUTES),
            "network_latency": 200 + 150 * np.sin(2 * math.pi * minutes / 60),
            "error_rate": rng.uniform(0, 1, MINUTES),
            "request_count": rng.uniform(500, 1500, MINUTES),
        }
    )


HISTORY = _history()
X = HISTORY[list(METRICS)].to_numpy()


def _trained() -> NeuroWeaverModel:
    labelled = label_frame(HISTORY)
    n = len(labelled)
    split = Split(
        labelled.iloc[: n * 6 // 10],
        labelled.iloc[n * 6 // 10 : n * 8 // 10],
        labelled.iloc[n * 8 // 10 :],
    )
    params = Hyperparameters(
        Architecture(layers=2, width=32), learning_rate=5e-3, epochs=60, batch_size=32
    )
    return train_model(params, split)[0]


def _register(model: NeuroWeaverModel) -> str:
    with mlflow.start_run():
        return registry.register(model, NAME, X)


def _aliases() -> dict[str, str]:
    return {a: str(v) for a, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def _offline(version: str) -> registry.Stage:
    labelled = label_frame(HISTORY)
    x, y = labelled[list(METRICS)].to_numpy(), labelled["performance_score"].to_numpy()
    decision = registry.decide(NAME, "champion", version, x, y)
    return registry.apply(decision, NAME, "champion", shadow=True)


@pytest.fixture
def shadowing(settings: ServingSettings, monkeypatch: pytest.MonkeyPatch) -> ServingSettings:
    monkeypatch.setenv("SHADOW_SHARE", "1")
    monkeypatch.setenv("SHADOW_MIN_LABELLED", "20")
    reset()
    return get_settings()  # type: ignore[return-value]


def _keyed(rows: pd.DataFrame) -> list[dict[str, object]]:
    return [
        {
            **{m: float(row[m]) for m in METRICS},
            "service": SERVICE,
            "timestamp": row["timestamp"].isoformat(),
        }
        for _, row in rows.iterrows()
    ]


def _file_live_traffic(client: TestClient) -> int:
    """The history into the store, then predict requests of four keyed rows each over it."""
    samples = _keyed(HISTORY)
    assert client.post("/api/v2/metrics", json={"samples": samples}).status_code in (200, 201)
    sent = 0
    for first in range(0, MINUTES - 8, 4):
        body = {"instances": samples[first : first + 4]}
        assert client.post("/api/v2/neuroweaver/predict", json=body).status_code == 200
        sent += 4
    return sent


def _filed(champion: str) -> int:
    return len(
        read_requests(
            open_store(get_settings().database_url),
            NAME,
            champion,
            START - timedelta(days=1),
            datetime.now(UTC) + timedelta(minutes=1),
        )
    )


@pytest.mark.usefixtures("prefect_harness")
def test_a_better_version_runs_in_shadow_and_is_promoted_on_the_labelled_live_requests(
    shadowing: ServingSettings,
) -> None:
    champion = _register(make_model(X, seed=1))
    registry.set_alias(NAME, "champion", champion)
    challenger = _register(_trained())
    assert _offline(challenger) == "challenger"
    assert _aliases() == {"champion": champion, "challenger": challenger}
    from serving.app import create_app

    with TestClient(create_app()) as client:
        sent = _file_live_traffic(client)
        wait_for(lambda: _filed(champion) == sent)
        (listed,) = [m for m in client.get("/api/v2/models").json()["models"] if m["name"] == NAME]
        assert listed["shadow"]["version"] == challenger and listed["shadow"]["status"] == "running"
    result = orchestrate_flow(as_of=datetime.now(UTC))
    (shadow,) = result["shadow"]
    assert shadow["status"] == "promote", shadow
    assert float(shadow["challenger_mae"]) < float(shadow["champion_mae"])
    assert float(shadow["p_better"]) < 0.05 and int(shadow["labelled"]) >= 20
    assert _aliases() == {"champion": challenger}
    tags = MlflowClient().get_model_version(NAME, challenger).tags
    assert tags["shadow.status"] == "promoted" and tags["shadow.champion"] == champion
    assert "promoted to @champion" in asyncio.run(_artifact("neuroweaver-shadow"))


async def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        (artifact,) = await client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return str(artifact.data)


def test_a_version_that_loses_offline_never_reaches_shadow(shadowing: ServingSettings) -> None:
    champion = _register(_trained())
    registry.set_alias(NAME, "champion", champion)
    loser = _register(make_model(X, seed=2))
    assert _offline(loser) == "rejected"
    assert _aliases() == {"champion": champion}


def _shadow(version: str) -> None:
    registry.start_shadow(MlflowClient(), NAME, version)


def _recorded(champion: str, model: NeuroWeaverModel) -> None:
    """The store holds the history, and the shadow log what `model` answered as champion."""
    from monitoring.store import ingestion

    engine = open_store(get_settings().database_url)
    ingestion.store_batch(engine, HISTORY.to_dict("records"))
    scores = model.predict(X)
    record_requests(
        engine,
        [
            ShadowRequest(
                NAME,
                f"r{i // 4}",
                SERVICE,
                HISTORY["timestamp"][i],
                X[i].tolist(),
                champion,
                float(scores[i]),
                datetime.now(UTC),
            )
            for i in range(MINUTES - 8)
        ],
    )


def test_a_worse_challenger_is_rejected_and_the_champion_stays(shadowing: ServingSettings) -> None:
    good = _trained()
    champion = _register(good)
    registry.set_alias(NAME, "champion", champion)
    worse = _register(make_model(X, seed=4))
    _shadow(worse)
    _recorded(champion, good)
    report = review(NAME, get_settings(), datetime.now(UTC))
    assert report["status"] == "reject" and float(report["p_worse"]) < 0.05, report
    assert _aliases() == {"champion": champion}
    assert MlflowClient().get_model_version(NAME, worse).tags["shadow.status"] == "rejected"


def test_a_challenger_that_fails_in_shadow_is_recorded_and_dropped(
    shadowing: ServingSettings,
) -> None:
    good = _trained()
    champion = _register(good)
    registry.set_alias(NAME, "champion", champion)
    broken = _register(make_model(X, seed=5, config_width=32))  # its saved form cannot load
    _shadow(broken)
    _recorded(champion, good)
    report = review(NAME, get_settings(), datetime.now(UTC))
    assert report["status"] == "failed"
    assert _aliases() == {"champion": champion}
    tags = MlflowClient().get_model_version(NAME, broken).tags
    assert tags["shadow.status"] == "failed" and "failed in shadow" in tags["shadow.reason"]


def test_too_few_labelled_requests_keep_the_challenger_waiting(shadowing: ServingSettings) -> None:
    champion = _register(make_model(X, seed=1))
    registry.set_alias(NAME, "champion", champion)
    challenger = _register(make_model(X, seed=6))
    _shadow(challenger)
    report = review(NAME, get_settings(), datetime.now(UTC))
    assert report["status"] == "waiting" and report["labelled"] == "0"
    assert _aliases() == {"champion": champion, "challenger": challenger}
