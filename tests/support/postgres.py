"""The local PostgreSQL server the database tests use, and what they read back from it."""

from __future__ import annotations

import os

from sqlalchemy import create_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "AUTOMATRIX_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def postgres_reachable() -> bool:
    try:
        with create_engine(POSTGRES_ADMIN_URL).connect():
            return True
    except Exception:
        return False


def table_names(url: str) -> set[str]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
