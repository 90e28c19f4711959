"""`automatrix train --model failure-risk` through the console script, on a store that holds only
what `automatrix ingest --source simulator` gave."""

from __future__ import annotations

import json

import pytest

from serving.settings import ServingSettings
from tests.serving.test_cli import _run, prefect_api  # noqa: F401  (the fixture)


@pytest.mark.slow
def test_cli_train_failure_risk_on_a_simulator_store_registers_a_version(
    settings: ServingSettings,
    prefect_api: dict[str, str],  # noqa: F811
) -> None:
    ingested = _run("ingest", "--source", "simulator", env=prefect_api)
    assert ingested.returncode == 0, ingested.stderr
    result = _run("train", "--model", "failure-risk", env=prefect_api)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["version"] == "1" and 0 < report["threshold"] < 1
    assert report["learned"]["rows"] == report["hand_set_rule"]["rows"] > 0


def test_cli_train_failure_risk_on_an_empty_store_says_to_ingest(
    settings: ServingSettings,
    prefect_api: dict[str, str],  # noqa: F811
) -> None:
    result = _run("train", "--model", "failure-risk", env=prefect_api)
    assert result.returncode == 1 and "ingest first" in result.stderr


def test_cli_train_failure_risk_refuses_data_rows(settings: ServingSettings) -> None:
    result = _run("train", "--model", "failure-risk", "--data", "rows.json")
    assert result.returncode == 2 and "failure-risk learns from the store" in result.stderr
