"""A migrated SQLite store file seeded with simulated samples, for module-scoped fixtures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from monitoring.sources.simulator import SimulatedWindow, simulate
from monitoring.store import ingestion, migrate
from monitoring.store.engine import make_engine


def simulated_store(
    path: Path, start: datetime, end: datetime, services: Sequence[str]
) -> tuple[Engine, SimulatedWindow]:
    """The store at `path`, migrated, holding the simulated samples of [start, end) for
    `services`; the window is returned so the caller can add its incidents or detect on it.
    The caller disposes of the engine."""
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    window = simulate(start, end, services=list(services))
    ingestion.store_batch(engine, window.samples)
    return engine, window
