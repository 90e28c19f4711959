"""What the protocol needs of a registered model, and the repository of those served.

A model joins the protocol by registering a `ModelAdapter`: its name, its one input and one
output tensor, the version its alias serves now with a scorer for it, and a loader that turns a
registered version into a function from a float matrix to an output matrix. The repository keeps
the last few loaded versions, so `/versions/{v}` loads a version once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from serving.inference.stats import LiveStats
from serving.inference.tensors import TensorSpec

INLINE_ROWS = 64  # a forward pass this small costs less than a hop to a thread


@dataclass(frozen=True, slots=True)
class Scored:
    outputs: np.ndarray  # (rows, outputs)
    version: str  # the version that answered (the alias may move between two requests)


Scorer = Callable[[np.ndarray], Awaitable[Scored]]
Predict = Callable[[np.ndarray], np.ndarray]


def _no_check(_rows: np.ndarray) -> str | None:
    return None


@dataclass(frozen=True)
class ModelAdapter:
    """One registered model over the protocol."""

    name: str
    input: TensorSpec
    output: TensorSpec
    current: Callable[[], str | None]  # the version the alias serves now; None when none
    problem: Callable[[], str]  # why none is served
    score_current: Scorer
    load: Callable[[str], Predict]  # blocking; the registry's NotFound or ModelLoadError
    check: Callable[[np.ndarray], str | None] = _no_check  # the reason rows are refused
    platform: str = "mlflow-pyfunc"


class UnknownModel(LookupError):
    """No model of that name is served over the protocol."""


class ModelRepository:
    """The adapters by name, and a small cache of loaded versions per model."""

    def __init__(self, cache_size: int = 4) -> None:
        self.cache_size = cache_size
        self._adapters: dict[str, ModelAdapter] = {}
        self._versions: OrderedDict[tuple[str, str], Predict] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Lock] = {}
        self.stats: dict[str, LiveStats] = {}

    def register(self, adapter: ModelAdapter) -> None:
        self._adapters[adapter.name] = adapter
        self.stats[adapter.name] = LiveStats()

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def get(self, name: str) -> ModelAdapter:
        try:
            return self._adapters[name]
        except KeyError:
            raise UnknownModel(f"no model named {name!r} is served; try {self.names()}") from None

    async def version(self, adapter: ModelAdapter, version: str) -> Predict:
        """The predict function of one registered version, loaded off the loop the first time."""
        key = (adapter.name, version)
        found = self._versions.get(key)
        if found is not None:
            self._versions.move_to_end(key)
            return found
        async with self._loading.setdefault(key, asyncio.Lock()):  # one load per version
            found = self._versions.get(key)
            if found is None:
                found = await asyncio.to_thread(adapter.load, version)
                self._keep(key, found)
        self._loading.pop(key, None)
        return found

    def _keep(self, key: tuple[str, str], predict: Predict) -> None:
        self._versions[key] = predict
        while len(self._versions) > self.cache_size:
            self._versions.popitem(last=False)


async def score_version(predict: Predict, rows: np.ndarray, version: str) -> Scored:
    """Small batches on the loop, large ones on a thread."""
    if len(rows) <= INLINE_ROWS:
        return Scored(predict(rows), version)
    return Scored(await asyncio.to_thread(predict, rows), version)
