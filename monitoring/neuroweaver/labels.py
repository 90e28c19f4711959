"""The learned target: will the service meet its objectives over the next few minutes?

performance_score(t) = the share of the minutes t+1 .. t+H in which the service meets both its
latency objective (network_latency <= LATENCY_SLO_MS) and its error objective
(error_rate <= ERROR_SLO_PERCENT). 1.0 means all of the coming minutes are good, 0.0 none.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from monitoring.samples import METRICS, Sample

LATENCY_SLO_MS = 250.0
ERROR_SLO_PERCENT = 2.0
HORIZON_MINUTES = 5
TARGET = "performance_score"


def samples_frame(samples: Sequence[Sample]) -> pd.DataFrame:
    columns = ("service", "timestamp", *METRICS)
    return pd.DataFrame([[getattr(s, c) for c in columns] for s in samples], columns=list(columns))


def label_frame(frame: pd.DataFrame, horizon: int = HORIZON_MINUTES) -> pd.DataFrame:
    """Adds `performance_score`; rows without a full horizon of future samples are dropped."""
    parts = [_label_service(group, horizon) for _, group in frame.groupby("service", sort=True)]
    labelled = pd.concat(parts) if parts else frame.assign(**{TARGET: []})
    return labelled.sort_values(["timestamp", "service"]).reset_index(drop=True)


def _label_service(group: pd.DataFrame, horizon: int) -> pd.DataFrame:
    group = group.sort_values("timestamp")
    good = (group["network_latency"] <= LATENCY_SLO_MS) & (group["error_rate"] <= ERROR_SLO_PERCENT)
    future = good.astype(float)[::-1].rolling(horizon, min_periods=horizon).sum()[::-1].shift(-1)
    # A gap in the samples would make "the next H rows" span more than H minutes.
    span = group["timestamp"].shift(-horizon) - group["timestamp"]
    contiguous = span == pd.Timedelta(minutes=horizon)
    labelled = group.assign(**{TARGET: future / horizon})
    return labelled[contiguous & labelled[TARGET].notna()]


def xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame[list(METRICS)].to_numpy(np.float64), frame[TARGET].to_numpy(np.float64)


def truth_of(frame: pd.DataFrame) -> dict[tuple[str, datetime], float]:
    """The true score of each (service, timestamp) whose horizon the samples in `frame` cover."""
    labelled = label_frame(frame)
    return {
        (service, moment.to_pydatetime()): float(score)
        for service, moment, score in zip(
            labelled["service"], labelled["timestamp"], labelled[TARGET], strict=True
        )
    }
