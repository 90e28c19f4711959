"""The ingestion flow: default backfill, resuming where the last run stopped, CSV, bad windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError
from sqlalchemy.orm import Session

from flows.ingest import ingest_flow
from monitoring.store.engine import open_store
from monitoring.store.metrics import count_samples, read_samples
from serving.settings import ServingSettings

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _count(settings: ServingSettings) -> int:
    with Session(open_store(settings.database_url)) as session:
        return count_samples(session)


def test_ingest_simulator_without_range_backfills_three_days(settings: ServingSettings) -> None:
    result = ingest_flow(source="simulator")
    start, end = datetime.fromisoformat(result["start"]), datetime.fromisoformat(result["end"])
    assert end - start == timedelta(days=3)
    assert result["accepted"] == _count(settings) > 0


def test_ingest_next_run_takes_only_what_came_since_the_last(settings: ServingSettings) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    ingest_flow(source="simulator", start=end - timedelta(hours=2), end=end)
    result = ingest_flow(source="simulator", end=end + timedelta(minutes=10))
    assert datetime.fromisoformat(result["start"]) == end
    assert result["accepted"] == 10 * 5  # ten minutes of five services


def test_ingest_simulator_simulates_only_the_services_named(settings: ServingSettings) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    result = ingest_flow(
        source="simulator", start=end - timedelta(hours=1), end=end, services=["auth"]
    )
    with Session(open_store(settings.database_url)) as session:
        stored = read_samples(session)
    assert result["accepted"] == 60 and {s.service for s in stored} == {"auth"}


def test_ingest_same_window_twice_through_the_flow_keeps_one_copy(
    settings: ServingSettings,
) -> None:
    end = datetime.now(UTC)
    ingest_flow(source="simulator", start=end - timedelta(hours=1), end=end)
    first = _count(settings)
    ingest_flow(source="simulator", start=end - timedelta(hours=1), end=end)
    assert _count(settings) == first


def test_ingest_csv_reports_rejected_rows_and_stores_the_rest(
    settings: ServingSettings, tmp_path: Path
) -> None:
    csv = tmp_path / "samples.csv"
    csv.write_text(
        "service,timestamp,cpu_usage,memory_usage,network_latency,error_rate,request_count\n"
        "web,2026-03-02T10:00:00Z,40,50,120,0.5,900\n"
        "web,2026-03-02T10:01:00Z,nan,50,120,0.5,900\n"
        "web,2026-03-02T10:02:00Z,40,50,120,0.5,-3\n"
        "web,2026-03-02T10:03:00Z,41,51,121,0.4,910\n"
    )
    result = ingest_flow(
        source="csv",
        csv_path=str(csv),
        start=datetime(2026, 3, 2, tzinfo=UTC),
        end=datetime(2026, 3, 3, tzinfo=UTC),
    )
    assert (result["accepted"], result["rejected"]) == (2, 2)
    assert "cpu_usage must be finite" in result["reasons"][0]
    with Session(open_store(settings.database_url)) as session:
        assert [s.cpu_usage for s in read_samples(session)] == [40.0, 41.0]


def test_ingest_refuses_an_unknown_source(settings: ServingSettings) -> None:
    with pytest.raises(ParameterTypeError):
        ingest_flow(source="kafka")  # type: ignore[arg-type]


def test_ingest_refuses_an_empty_window(settings: ServingSettings) -> None:
    moment = datetime.now(UTC)
    with pytest.raises(ValueError, match="empty window"):
        ingest_flow(source="simulator", start=moment, end=moment - timedelta(hours=1))
