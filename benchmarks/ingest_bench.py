"""Ingestion rate: our validated bulk upsert vs the raw driver's executemany, same rows, one run.

    .venv/bin/python benchmarks/ingest_bench.py [--rows 100000] [--repeat 3]

SQLite (WAL) in a temporary folder, and PostgreSQL at 127.0.0.1:5432 when reachable (a scratch
database is created and dropped).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text

from monitoring.samples import Sample
from monitoring.sources.simulator import simulate
from monitoring.store import ingestion, migrate
from monitoring.store.engine import make_engine

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
COLUMNS = (
    "service_id, timestamp, cpu_usage, memory_usage, network_latency, error_rate, request_count"
)


def samples(rows: int) -> list[Sample]:
    services = [f"svc-{i}" for i in range(10)]
    minutes = rows // len(services)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    return simulate(start, start + timedelta(minutes=minutes), services).samples


def raw_rows(batch: list[Sample]) -> list[tuple[object, ...]]:
    ids = {name: i + 1 for i, name in enumerate(sorted({s.service for s in batch}))}
    return [
        (
            ids[s.service],
            s.timestamp,
            s.cpu_usage,
            s.memory_usage,
            s.network_latency,
            s.error_rate,
            s.request_count,
        )
        for s in batch
    ]


def timed(action: Callable[[], None]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def sqlite_pair(batch: list[Sample], folder: Path) -> tuple[float, float]:
    ours_url = f"sqlite:///{folder / f'ours-{uuid.uuid4().hex}.db'}"
    migrate.upgrade(ours_url)
    engine = make_engine(ours_url)
    ours = timed(lambda: ingestion.store_batch(engine, batch))
    engine.dispose()
    raw_path = folder / f"raw-{uuid.uuid4().hex}.db"
    migrate.upgrade(f"sqlite:///{raw_path}")
    rows = [(r[0], r[1].strftime("%Y-%m-%d %H:%M:%S.%f"), *r[2:]) for r in raw_rows(batch)]
    connection = sqlite3.connect(raw_path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executemany(
        "INSERT INTO services (id, name, created_at) VALUES (?, ?, ?)",
        [(i, f"svc-{i}", "2026-01-01") for i in range(1, 11)],
    )

    def raw() -> None:
        connection.executemany(
            f"INSERT INTO metric_samples ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
        connection.commit()

    elapsed = timed(raw)
    connection.close()
    return ours, elapsed


def postgres_pair(batch: list[Sample]) -> tuple[float, float] | None:
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    names = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL unreachable, skipped: {exc}")
        return None
    try:
        urls = [ADMIN.rsplit("/", 1)[0] + f"/{name}" for name in names]
        for url in urls:
            migrate.upgrade(url)
        engine = make_engine(urls[0])
        ours = timed(lambda: ingestion.store_batch(engine, batch))
        engine.dispose()
        rows = raw_rows(batch)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{names[1]}") as connection:
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO services (id, name, created_at) VALUES (%s, %s, now())",
                    [(i, f"svc-{i}") for i in range(1, 11)],
                )
            connection.commit()

            def raw() -> None:
                with connection.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO metric_samples ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        rows,
                    )
                connection.commit()

            elapsed = timed(raw)
        return ours, elapsed
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def report(store: str, pairs: list[tuple[float, float]], rows: int) -> None:
    ours = statistics.median(rows / p[0] for p in pairs)
    raw = statistics.median(rows / p[1] for p in pairs)
    print(f"| {store} | {ours:,.0f} | {raw:,.0f} | {ours / raw:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batch = samples(args.rows)
    print(f"{len(batch):,} samples, median of {args.repeat} runs, {datetime.now(UTC):%Y-%m-%d}\n")
    print(
        "| store | ours: validate + upsert (samples/s) | raw executemany (samples/s) | ours / raw |"
    )
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        report(
            "SQLite (WAL)", [sqlite_pair(batch, Path(tmp)) for _ in range(args.repeat)], len(batch)
        )
    pg = [p for p in (postgres_pair(batch) for _ in range(args.repeat)) if p is not None]
    if pg:
        report("PostgreSQL", pg, len(batch))


if __name__ == "__main__":
    main()
