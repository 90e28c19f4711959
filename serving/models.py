"""The served model: loading `@champion`, checking it, and swapping it in atomically."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.neuroweaver.model import CONFIG_FILE, WEIGHTS_FILE, NeuroWeaverModel
from monitoring.neuroweaver.registry import ModelLoadError, check_model
from monitoring.samples import METRICS

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


class RegistryUnreachable(RuntimeError):
    """The MLflow registry did not answer; the current model stays."""


class NoChampion(LookupError):
    """No version carries the alias yet."""


def resolve_alias(name: str, alias: str) -> str:
    """The version behind `name@alias`; NoChampion or RegistryUnreachable otherwise."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NoChampion(f"no version of {name!r} has the alias @{alias} yet") from exc
        raise RegistryUnreachable(f"the MLflow registry failed: {exc.message}") from exc
    except Exception as exc:  # connection errors surface as many types
        raise RegistryUnreachable(f"the MLflow registry is unreachable: {exc}") from exc


def load_checked(name: str, version: str, alias: str) -> LoadedModel:
    """Downloads, loads (weights only) and checks one version on its own input example."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp)
            )
            model = NeuroWeaverModel.load(_find(local, CONFIG_FILE), _find(local, WEIGHTS_FILE))
            example = _input_example(local)
        except ModelLoadError:
            raise
        except (MlflowException, OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise ModelLoadError(f"{name} version {version} cannot be loaded: {exc}") from exc
    try:
        check_model(model, example)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{name} version {version} failed its check: {exc}") from exc
    except Exception as exc:
        raise ModelLoadError(
            f"{name} version {version} failed on its input example: {exc}"
        ) from exc
    return LoadedModel(model, name, version, alias, time.time(), example)


def _find(root: Path, filename: str) -> Path:
    matches = sorted(root.rglob(filename))
    if not matches:
        raise ModelLoadError(f"{filename} is missing from the model's artifacts")
    return matches[0]


def _input_example(root: Path) -> np.ndarray:
    """The logged input example as an (n, 5) array; a model without one is refused."""
    from mlflow.models import Model

    try:
        model_dir = _find(root, "MLmodel").parent
        frame: Any = Model.load(model_dir).load_input_example(str(model_dir))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"the input example cannot be read: {exc}") from exc
    if frame is None:
        raise ModelLoadError("the model was registered without an input example")
    return np.asarray(frame[list(METRICS)], dtype=np.float64)


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
            version = resolve_alias(self.name, self.alias)
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
