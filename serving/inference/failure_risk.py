"""The failure risk over the protocol: `failure-risk@champion` (the state the insights and the
cycle use, from the same holder) and any registered version, scored on the model's feature rows.

Its input is one row of `failure_model.FEATURES` per request row, in that order, every value
finite (as for every model over the protocol). Its output is the calibrated probability of an SLO
breach or incident within the version's horizon; the version's alarm threshold is in MLflow.
"""

from __future__ import annotations

import numpy as np

from monitoring.assess import failure_model
from monitoring.assess.failure_model import FEATURES, FittedRisk
from monitoring.neuroweaver import registry
from serving.inference.adapters import ModelAdapter, Predict, Scored
from serving.inference.tensors import TensorSpec
from serving.orchestrator.risk import RiskHolder

INPUT = TensorSpec("features", "FP32", (-1, len(FEATURES)), frozenset({"FP64"}))
OUTPUT = TensorSpec("risk", "FP32", (-1, 1))


def adapter(holder: RiskHolder) -> ModelAdapter:
    """The adapter of `failure-risk`, answering with the version the holder serves."""

    async def score_current(rows: np.ndarray) -> Scored:
        served, version = holder.current, holder.version
        if served is None or version is None:  # the ready check refuses before this
            raise LookupError(holder.problem or "failure-risk has no version loaded")
        return Scored(_predict(served.state)(rows), version)

    return ModelAdapter(
        name=holder.name,
        input=INPUT,
        output=OUTPUT,
        current=lambda: holder.version if holder.current is not None else None,
        problem=lambda: holder.problem or f"{holder.name} has no @champion",
        score_current=score_current,
        load=load,
        platform="automatrix-json-trees",
    )


def load(version: str) -> Predict:
    """One registered version's predict; the registry's NotFound or ModelLoadError."""
    registry.get_version(failure_model.MODEL_NAME, version)
    return _predict(failure_model.load_version(version))


def _predict(state: FittedRisk) -> Predict:
    return lambda rows: state.predict(rows.astype(np.float64)).reshape(-1, 1)
