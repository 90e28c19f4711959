"""Training progress in the store, written while a training runs so that anyone can read it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.store.tables import TrainingRun


def start(engine: Engine, run_id: str, n_trials: int, flow_run_id: str | None) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.merge(
            TrainingRun(
                id=run_id,
                flow_run_id=flow_run_id,
                state="RUNNING",
                trial=0,
                n_trials=n_trials,
                epoch=0,
                best_loss=None,
                started_at=now,
                updated_at=now,
            )
        )


def update(engine: Engine, run_id: str, **fields: object) -> None:
    with Session(engine) as session, session.begin():
        run = session.get(TrainingRun, run_id)
        if run is None:
            return
        for key, value in fields.items():
            setattr(run, key, value)
        run.updated_at = datetime.now(UTC)


def recent(engine: Engine, limit: int = 20) -> list[TrainingRun]:
    with Session(engine) as session:
        query = select(TrainingRun).order_by(TrainingRun.started_at.desc()).limit(limit)
        runs = list(session.scalars(query))
        session.expunge_all()
        return runs


@dataclass
class ThrottledReporter:
    """Writes trial, epoch and best loss at most once per `interval` seconds (and always on a new trial)."""

    engine: Engine
    run_id: str
    interval: float = 1.0
    _last_write: float = 0.0
    _last_trial: int = -1

    def __call__(self, trial: int, epoch: int, best_loss: float | None) -> None:
        now = time.monotonic()
        if trial == self._last_trial and now - self._last_write < self.interval:
            return
        self._last_write, self._last_trial = now, trial
        update(self.engine, self.run_id, trial=trial, epoch=epoch, best_loss=best_loss)
