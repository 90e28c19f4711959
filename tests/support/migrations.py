"""A store left by an earlier version: migrated to an old revision, with a row that version wrote."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Engine

from monitoring.store import migrate
from monitoring.store.engine import make_engine


def store_at(url: str, revision: str, *rows: tuple[str, dict[str, Any]]) -> Engine:
    """The store at `url` migrated to `revision` only, holding `rows` (SQL and its parameters)
    as that version would have written them; the caller upgrades it and checks what is kept."""
    command.upgrade(migrate.alembic_config(url), revision)
    engine = make_engine(url)
    with engine.begin() as connection:
        for sql, params in rows:
            connection.execute(text(sql), params)
    return engine
