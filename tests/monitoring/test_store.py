"""The metric store: idempotent bulk upserts, rejection with reasons, SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.sources.simulator import simulate
from monitoring.store import ingestion, migrate
from monitoring.store.engine import make_engine
from monitoring.store.metrics import count_samples, read_samples, replica_names
from monitoring.store.orchestrator import cursors
from tests.support.migrations import store_at

START = datetime(2026, 3, 2, tzinfo=UTC)


def _engine(url: str) -> Engine:
    migrate.upgrade(url)
    return make_engine(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = _engine(url)
    yield store
    store.dispose()


def _good(service: str = "api", minute: int = 0, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "service": service,
        "timestamp": START + timedelta(minutes=minute),
        "cpu_usage": 50.0,
        "memory_usage": 60.0,
        "network_latency": 120.0,
        "error_rate": 0.5,
        "request_count": 900.0,
    }
    return row | overrides


def test_ingest_same_window_twice_keeps_one_copy(engine: Engine) -> None:
    window = simulate(START, START + timedelta(hours=6), services=["api", "db"])
    ingestion.store_batch(engine, window.samples)
    ingestion.store_batch(engine, window.samples)
    with Session(engine) as session:
        assert count_samples(session) == len(window.samples) == 2 * 6 * 60


def test_upsert_sample_overwrites_values_for_same_service_and_time(engine: Engine) -> None:
    ingestion.store_batch(engine, [_good(cpu_usage=10.0)])
    ingestion.store_batch(engine, [_good(cpu_usage=90.0)])
    with Session(engine) as session:
        [sample] = read_samples(session)
    assert sample.cpu_usage == 90.0
    assert sample.timestamp == START


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("cpu_usage", float("nan"), "cpu_usage must be finite"),
        ("memory_usage", float("inf"), "memory_usage must be finite"),
        ("request_count", -1.0, "request_count=-1.0 is outside"),
        ("error_rate", 101.0, "error_rate=101.0 is outside"),
        ("network_latency", None, "network_latency is missing"),
        ("cpu_usage", "high", "cpu_usage must be a number"),
    ],
)
def test_store_batch_rejects_bad_sample_with_reason_and_keeps_the_rest(
    engine: Engine, field: str, value: object, reason: str
) -> None:
    rows = [_good(minute=0), _good(minute=1, **{field: value}), _good(minute=2)]
    report = ingestion.store_batch(engine, rows)
    assert (report.accepted, report.rejected) == (2, 1)
    assert report.reasons[0].startswith("row 1: ") and reason in report.reasons[0]
    with Session(engine) as session:
        assert count_samples(session) == 2


def test_store_batch_rejects_naive_or_unparsable_timestamp_only_for_that_row(
    engine: Engine,
) -> None:
    report = ingestion.store_batch(engine, [_good(timestamp="yesterday"), _good(minute=3)])
    assert report.rejected == 1 and "yesterday" in report.reasons[0]


def test_read_samples_returns_aware_utc_timestamps(engine: Engine) -> None:
    ingestion.store_batch(engine, [_good(timestamp="2026-03-02T01:00:00+02:00")])
    with Session(engine) as session:
        [sample] = read_samples(session)
    assert sample.timestamp == datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


def test_sqlite_store_uses_write_ahead_logging(tmp_path) -> None:
    store = _engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_migrations_run_twice_without_error(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    with make_engine(url).connect() as connection:
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert current == ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_store(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_processes_starting_at_once_on_one_empty_store_all_reach_head(empty_store: str) -> None:
    # uvicorn workers and API replicas migrate on start; without the store's lock, two of them
    # create the same tables and one dies on "already exists".
    script = "import sys; from monitoring.store import migrate; migrate.upgrade(sys.argv[1])"
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    failures = [err for p in starts if (err := p.communicate(timeout=120)[1]) and p.returncode]
    assert failures == []
    with make_engine(empty_store).connect() as connection:
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        assert list(current) == [
            ScriptDirectory.from_config(migrate.alembic_config(empty_store)).get_current_head()
        ]


# --- replicas -------------------------------------------------------------------------------


def _replica(name: str, minute: int = 0, **values: object) -> dict[str, object]:
    return _good(minute=minute, replica=name, **values)


def test_replica_rows_bring_their_services_combined_row(engine: Engine) -> None:
    report = ingestion.store_batch(
        engine,
        [
            _replica("api-0", cpu_usage=20.0, network_latency=100.0, request_count=300.0),
            _replica("api-1", cpu_usage=60.0, network_latency=400.0, request_count=100.0),
        ],
    )
    assert (report.accepted, report.rejected) == (2, 0)
    with Session(engine) as session:
        [service] = read_samples(session)
        assert [s.replica for s in read_samples(session, replica=None)] == ["", "api-0", "api-1"]
        [own] = read_samples(session, replica="api-1")
        assert replica_names(session, "api") == ["api-0", "api-1"]
    assert service.replica == "" and own.network_latency == 400.0
    assert service.cpu_usage == 40.0  # the replicas' mean
    assert service.request_count == 400.0  # their sum
    assert service.network_latency == 175.0  # weighted by requests: (300*100 + 100*400) / 400


def test_a_batch_with_its_own_service_row_keeps_it(engine: Engine) -> None:
    ingestion.store_batch(engine, [_good(cpu_usage=5.0), _replica("api-0", cpu_usage=90.0)])
    with Session(engine) as session:
        [service] = read_samples(session)
        assert count_samples(session, replica=None) == 2
    assert service.cpu_usage == 5.0


def test_a_replica_and_its_service_at_one_instant_are_two_rows_upserted_apart(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, [_good(cpu_usage=10.0), _replica("api-0", cpu_usage=20.0)])
    ingestion.store_batch(engine, [_replica("api-0", cpu_usage=30.0)])
    with Session(engine) as session:
        rows = {s.replica: s.cpu_usage for s in read_samples(session, replica=None)}
    # The second batch's service total overwrites the first service row: the newest word wins.
    assert rows == {"": 30.0, "api-0": 30.0}


@pytest.mark.parametrize("replica", ["", "  ", 7])
def test_a_blank_or_non_text_replica_is_rejected_with_its_reason(
    engine: Engine, replica: object
) -> None:
    report = ingestion.store_batch(engine, [_replica(replica), _good(minute=1)])  # type: ignore[arg-type]
    assert report.rejected == 1 and "replica must be a non-empty string" in report.reasons[0]


def test_migrate_to_replicas_keeps_every_row_as_its_services_own(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    rows = (
        ("INSERT INTO services (id, name, created_at) VALUES (1, 'kept', :at)", {"at": START}),
        (
            "INSERT INTO metric_samples (service_id, timestamp, cpu_usage, memory_usage,"
            " network_latency, error_rate, request_count) VALUES (1, :at, 1, 2, 3, 4, 5)",
            {"at": START},
        ),
        (
            "INSERT INTO detector_cursors (service, scored_until, updated_at)"
            " VALUES ('kept', :at, :at)",
            {"at": START},
        ),
    )
    old = store_at(url, "0007", *rows)
    migrate.upgrade(url)
    with Session(old) as session:
        [kept] = read_samples(session)
        assert cursors(session, ["kept"]) == {"kept": START}
        assert cursors(session, ["kept"], replica="kept-0") == {}
    assert (kept.service, kept.replica, kept.request_count) == ("kept", "", 5.0)
