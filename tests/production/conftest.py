"""Fixtures for the production profile: several fresh PostgreSQL databases, one per store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.postgres import POSTGRES_ADMIN_URL, postgres_reachable


@pytest.fixture
def postgres_databases() -> Iterator[Callable[[str], str]]:
    """`make("mlflow")` -> the URL of a new, empty database; all are dropped afterwards."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make(purpose: str) -> str:
        name = f"automatrix_{purpose}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield make
    with admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def mlflow_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One real `mlflow server` for the session, on a fresh PostgreSQL database, proxying its
    artifacts to a folder of its own; its URL and that folder. Tests use models of their own."""
    from tests.support.mlflow_server import fresh_database, mlflow_server

    root = tmp_path_factory.mktemp("mlflow-server")
    with fresh_database("mlflow") as backend, mlflow_server(backend, root) as url:
        yield url, root / "artifacts"
