"""Lineage and retention, on a real temporary MLflow store: each version's training data is an
MLflow dataset, and versions beyond the newest N that hold no alias are archived."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from monitoring.config import reset
from monitoring.neuroweaver import registry
from serving.settings import ServingSettings

NAME = "lineage-model"
ROWS = pd.DataFrame(
    {
        "service": ["b", "a", "a"],
        "timestamp": pd.to_datetime(
            ["2026-11-01T00:00Z", "2026-11-01T00:05Z", "2026-11-02T00:00Z"]
        ),
        "value": [1.0, 2.0, 3.0],
    }
)


def _versions(count: int, tmp_path: Path) -> None:
    client = MlflowClient()
    client.create_registered_model(NAME)
    for _ in range(count):
        client.create_model_version(NAME, source=str(tmp_path), run_id=None)


def _archived() -> set[str]:
    return {
        str(v.version)
        for v in registry.list_versions(NAME)
        if v.tags.get(registry.ARCHIVED_TAG) == "true"
    }


def test_training_data_is_the_runs_dataset_with_source_window_rows_and_digest(
    settings: ServingSettings,
) -> None:
    with mlflow.start_run() as run:
        digest = registry.log_training_data(ROWS, {"store": "test rows"}, "rows", targets="value")
    (found,) = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    source = json.loads(found.dataset.source)["tags"]
    assert found.dataset.digest == digest == source["sha256"]
    assert source["store"] == "test rows" and source["rows"] == "3"
    assert source["since"].startswith("2026-11-01T00:00") and source["until"].startswith(
        "2026-11-02"
    )
    assert source["services"] == "a,b"
    assert {t.key: t.value for t in found.tags}["mlflow.data.context"] == "training"


def test_the_digest_follows_the_content_not_the_object() -> None:
    assert registry.digest_of(ROWS) == registry.digest_of(ROWS.copy())
    assert registry.digest_of(ROWS) != registry.digest_of(ROWS.assign(value=[1.0, 2.0, 4.0]))


def test_versions_beyond_the_newest_n_without_an_alias_are_archived_and_aliased_ones_kept(
    settings: ServingSettings, tmp_path: Path
) -> None:
    _versions(6, tmp_path)
    registry.set_alias(NAME, "champion", "1")  # the default keep (10) archives nothing
    assert _archived() == set()
    assert registry.retire_unaliased(NAME, keep=2) == ["4", "3", "2"]
    assert _archived() == {"2", "3", "4"}
    assert registry.retire_unaliased(NAME, keep=2) == []  # nothing new to archive
    assert len(registry.list_versions(NAME)) == 6  # archived, not deleted


def test_a_version_rolled_back_to_loses_its_archived_mark(
    settings: ServingSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_KEEP_VERSIONS", "2")
    reset()
    _versions(5, tmp_path)
    registry.set_alias(NAME, "champion", "1")
    assert _archived() == {"2", "3"}
    registry.set_alias(NAME, "champion", "3")
    assert _archived() == {"1", "2"}


def test_every_promotion_decision_applies_the_retention_rule(
    settings: ServingSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_KEEP_VERSIONS", "1")
    reset()
    _versions(3, tmp_path)
    registry.record_decision(NAME, "3", promoted=False, tags={"promotion.reason": "worse"})
    assert registry.aliases(NAME) == {}
    assert _archived() == {"1", "2"}


def test_a_keep_below_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_KEEP_VERSIONS", "0")
    reset()
    with pytest.raises(ValueError, match="model_keep_versions"):
        registry.get_settings()
    reset()
