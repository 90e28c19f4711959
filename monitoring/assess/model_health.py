"""How the served model does on recent data, against the error it was promoted with.

The recent error is the RMSE of its predictions against the SLO labels of the last hours'
samples; the baseline is the test RMSE recorded on the version when it was promoted. The
version to roll back to is the champion it replaced (recorded then), or the one before it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.healing.policy import ModelHealth
from monitoring.neuroweaver.labels import label_frame, samples_frame, xy
from monitoring.store.metrics import read_samples

RECENT = timedelta(hours=6)
MIN_ROWS = 30


def recent_error(
    engine: Engine, predict: Callable[[np.ndarray], np.ndarray], now: datetime
) -> float | None:
    with Session(engine) as session:
        samples = read_samples(session, start=now - RECENT, end=now)
    if not samples:
        return None
    labelled = label_frame(samples_frame(samples))
    if len(labelled) < MIN_ROWS:
        return None
    x, y = xy(labelled)
    return float(np.sqrt(np.mean((np.asarray(predict(x), dtype=float) - y) ** 2)))


def promotion_facts(name: str, version: str) -> tuple[float | None, str | None]:
    """(the test RMSE it was promoted with, the version it replaced) from the registry."""
    from monitoring.neuroweaver import registry  # MLflow loads only when a model is checked

    evidence = registry.promotion_evidence(name, version)
    baseline = None if evidence is None else evidence.new_rmse
    replaced = None if evidence is None else evidence.champion_version
    if replaced is None and version.isdigit() and int(version) > 1:
        replaced = str(int(version) - 1)
    return baseline, replaced


def model_health(
    engine: Engine,
    predict: Callable[[np.ndarray], np.ndarray],
    name: str,
    version: str,
    alias: str,
    now: datetime,
) -> ModelHealth | None:
    """None when there is too little recent data or no recorded baseline to compare with."""
    error = recent_error(engine, predict, now)
    if error is None:
        return None
    baseline, previous = promotion_facts(name, version)
    if baseline is None:
        return None
    return ModelHealth(name, version, error, baseline, previous, alias)
