"""The served model: loading `@champion`, checking it, and swapping it in atomically."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from monitoring.neuroweaver import registry
from monitoring.neuroweaver.model import NeuroWeaverModel
from monitoring.neuroweaver.registry import (
    ModelLoadError,
    NoChampion,
    RegistryUnreachable,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A checked model and where it came from; replaced as a whole, never mutated."""

    model: NeuroWeaverModel
    name: str
    version: str
    alias: str
    loaded_at: float
    example: np.ndarray


OnSwap = Callable[[LoadedModel], None]


def load_checked(name: str, version: str, alias: str) -> LoadedModel:
    """Downloads, loads (weights only) and checks one version on its own input example."""
    model, example = registry.load_checked(name, version)
    return LoadedModel(model, name, version, alias, time.time(), example)


@dataclass
class ModelHolder:
    """Holds the current model; a reload either swaps in a checked model or changes nothing."""

    name: str
    alias: str
    current: LoadedModel | None = None
    problem: str | None = "the model has not been loaded yet"
    refused: dict[str, str] = field(default_factory=dict)
    last_check: float | None = None
    swaps: int = 0
    _reloading: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reload(self) -> LoadedModel | None:
        """Blocking: loads a newly aliased version; returns it when it was swapped in.

        One reload at a time: the poller, a promotion and MLflow's webhook may all ask at once.
        """
        with self._reloading:
            return self._reload()

    def _reload(self) -> LoadedModel | None:
        self.last_check = time.time()
        try:
            version = registry.resolve_alias(self.name, self.alias)
        except (NoChampion, RegistryUnreachable) as exc:
            self._note_problem(str(exc))
            return None
        if self.current is not None and self.current.version == version:
            self.problem = None
            return None
        if version in self.refused:
            return None
        return self._load(version)

    def _load(self, version: str) -> LoadedModel | None:
        try:
            loaded = load_checked(self.name, version, self.alias)
        except ModelLoadError as exc:
            self.refused[version] = str(exc)
            kept = f"; version {self.current.version} keeps serving" if self.current else ""
            log.error("refused %s version %s: %s%s", self.name, version, exc, kept)
            self._note_problem(f"version {version} was refused: {exc}")
            return None
        self.current = loaded  # one reference assignment: requests see the old or the new model
        self.problem = None
        self.swaps += 1
        log.info("now serving %s version %s (@%s)", self.name, version, self.alias)
        return loaded

    def _note_problem(self, problem: str) -> None:
        if self.current is None:
            self.problem = problem
        else:
            log.warning("%s; version %s keeps serving", problem, self.current.version)
            self.problem = None


async def poll(holder: ModelHolder, interval: float, on_swap: OnSwap) -> None:
    """Checks the alias every `interval` seconds, off the event loop, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            swapped = await asyncio.to_thread(holder.reload)
        except Exception:  # the poller must outlive any surprise
            log.exception("model reload failed; the current model stays")
            continue
        if swapped is not None:
            on_swap(swapped)
