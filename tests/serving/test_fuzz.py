"""Schemathesis against the app's own OpenAPI schema, bounded: no 5xx, every answer as documented.

`benchmarks/fuzz_api.py` runs the same for longer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.fuzz_support import fuzz
from monitoring.config import reset
from serving.settings import ServingSettings
from tests.support.live import LiveServer


@pytest.fixture
def fuzz_settings(api_settings: ServingSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENABLE_ML_TRAINING", "false")  # a fuzzed body must not start trainings
    monkeypatch.setenv("RATE_LIMIT_BURST", "1000")
    reset()
    yield


@pytest.mark.slow
def test_fuzz_every_operation_from_openapi_schema_finds_no_error(
    fuzz_settings: None, live_server: LiveServer
) -> None:
    report = fuzz(f"http://{live_server.url}", max_examples=6)
    assert report.operations >= 25
    assert report.requests >= report.operations * 3
    assert report.failures == [], f"{len(report.failures)} failures:\n\n" + "\n\n".join(
        report.failures[:10]
    )
    assert 200 in report.statuses
