"""Runs the metric store's Alembic migrations, so every deployment reaches the same schema.

Several processes may start at once on one store (uvicorn workers, API replicas behind a load
balancer): each takes the store's migration lock first, so one migrates and the others then find
the schema at head. PostgreSQL and MariaDB/MySQL lock in the server; SQLite locks a file beside
the database.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY: Final = 7_415_022_613  # any constant: the advisory lock's name among this server's locks
LOCK_NAME: Final = "automatrix-store-migrations"
LOCK_TIMEOUT_S: Final = 300


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the store at `url` to the latest schema; safe to call on every start, from any
    number of processes at once."""
    with migration_lock(url):
        command.upgrade(alembic_config(url), "head")


@contextlib.contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Held by one process at a time for the store at `url`."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        with _file_lock(parsed.database):
            yield
    elif backend in ("postgresql", "mysql", "mariadb"):
        with _server_lock(url, backend):
            yield
    else:
        yield


@contextlib.contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield  # an in-memory store belongs to one process
        return
    path = Path(f"{database}.migrate.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _server_lock(url: str, backend: str) -> Iterator[None]:
    engine = create_engine(url, poolclass=NullPool)
    unlock: str
    params: dict[str, object]
    try:
        with engine.connect() as connection:
            if backend == "postgresql":
                connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'"))
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
                unlock, params = "SELECT pg_advisory_unlock(:key)", {"key": LOCK_KEY}
            else:
                got = connection.execute(
                    text("SELECT GET_LOCK(:name, :timeout)"),
                    {"name": LOCK_NAME, "timeout": LOCK_TIMEOUT_S},
                ).scalar()
                if got != 1:
                    raise TimeoutError(
                        f"the store's migration lock was not free in {LOCK_TIMEOUT_S} s"
                    )
                unlock, params = "SELECT RELEASE_LOCK(:name)", {"name": LOCK_NAME}
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text(unlock), params)
                connection.commit()
    finally:
        engine.dispose()
