"""The NeuroWeaver model registry the serving tests build: its name, a sample, small models, the champion alias."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient

from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel, build_network
from monitoring.samples import BOUNDS, METRICS

NAME = "neuroweaver"
SAMPLE = {
    "cpu_usage": 85.0,
    "memory_usage": 70.0,
    "network_latency": 200.0,
    "error_rate": 3.0,
    "request_count": 2000.0,
}


@dataclass(frozen=True)
class Registry:
    """The session's registry: v1 and v2 are good (and answer differently), v3 cannot load."""

    db: Path
    good: tuple[str, str]
    corrupt: str
    example: np.ndarray


def metric_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    highs = {"network_latency": 2000.0, "request_count": 50_000.0}
    return np.column_stack(
        [rng.uniform(BOUNDS[m][0], highs.get(m, BOUNDS[m][1]), n) for m in METRICS]
    )


def make_model(x: np.ndarray, seed: int, config_width: int | None = None) -> NeuroWeaverModel:
    """A small untrained model; `config_width` different from 64 makes its saved form unloadable."""
    torch.manual_seed(seed)
    network = build_network(Architecture(width=64))
    return NeuroWeaverModel(Architecture(width=config_width or 64), FeaturePipeline.fit(x), network)


def set_champion(version: str) -> None:
    MlflowClient().set_registered_model_alias(NAME, "champion", version)
