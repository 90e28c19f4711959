"""NeuroWeaver over the protocol: `@champion` is the model the predict endpoint serves (the same
holder and micro-batcher), and any registered version loads through the registry module."""

from __future__ import annotations

import numpy as np

from monitoring.neuroweaver import registry
from monitoring.samples import METRICS, metric_problem
from serving.inference.adapters import ModelAdapter, Predict, Scored
from serving.inference.tensors import TensorSpec
from serving.neuroweaver.validation import HIGH, LOW
from serving.state import AppState

INPUT = TensorSpec("metrics", "FP32", (-1, len(METRICS)), frozenset({"FP64"}))
OUTPUT = TensorSpec("performance_score", "FP32", (-1, 1))


def adapter(state: AppState) -> ModelAdapter:
    """The adapter of the model the app serves (MODEL_NAME, `neuroweaver` by default)."""
    holder = state.holder

    async def score_current(rows: np.ndarray) -> Scored:
        batcher = state.batcher
        batcher.enter()
        try:
            answer = await batcher.predict(rows)
        finally:
            batcher.leave()
        return Scored(answer.scores.reshape(-1, 1), answer.model.version)

    return ModelAdapter(
        name=holder.name,
        input=INPUT,
        output=OUTPUT,
        current=lambda: holder.current.version if holder.current else None,
        problem=lambda: holder.problem or "no model is loaded",
        score_current=score_current,
        load=lambda version: load(holder.name, version),
        check=bounds_problem,
    )


def load(name: str, version: str) -> Predict:
    """One registered version, loaded (weights only) and checked on its input example;
    the registry's NotFound for a version that does not exist."""
    registry.get_version(name, version)
    model, _ = registry.load_checked(name, version)
    return lambda rows: model.predict(rows).reshape(-1, 1)


def bounds_problem(rows: np.ndarray) -> str | None:
    """The first value outside its metric's physical bounds, as the predict endpoint refuses it."""
    if np.all(rows >= LOW) and np.all(rows <= HIGH):
        return None
    for index, row in enumerate(rows):
        for name, value in zip(METRICS, row, strict=True):
            problem = metric_problem(name, float(value))
            if problem:
                return f"row {index}: {problem}"
    return "a value is outside its metric's bounds"
