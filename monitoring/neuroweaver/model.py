"""The NeuroWeaver network and its loadable form: weights plus config, never a pickle."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.samples import METRICS

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class Architecture:
    layers: int = 2
    width: int = 64
    dropout: float = 0.1
    activation: str = "relu"


def build_network(arch: Architecture) -> nn.Sequential:
    """An MLP from the five scaled metrics to a score in [0, 1]."""
    if arch.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {arch.activation!r}")
    blocks: list[nn.Module] = []
    width_in = len(METRICS)
    for _ in range(arch.layers):
        blocks += [
            nn.Linear(width_in, arch.width),
            ACTIVATIONS[arch.activation](),
            nn.Dropout(arch.dropout),
        ]
        width_in = arch.width
    blocks += [nn.Linear(width_in, 1), nn.Sigmoid()]
    return nn.Sequential(*blocks)


class NeuroWeaverModel:
    """The feature pipeline and the network together: raw metrics in, scores out."""

    def __init__(self, arch: Architecture, pipeline: FeaturePipeline, network: nn.Module) -> None:
        self.arch = arch
        self.pipeline = pipeline
        self.network = network.eval()

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] for an (n, 5) array of raw metrics, in METRICS order."""
        features = torch.from_numpy(self.pipeline.transform(np.atleast_2d(raw)))
        with torch.inference_mode():
            return self.network(features).numpy()[:, 0].astype(np.float64)

    def save(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        config = {"architecture": asdict(self.arch), "pipeline": self.pipeline.to_dict()}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        return directory / CONFIG_FILE, directory / WEIGHTS_FILE

    @classmethod
    def load(cls, config_path: Path, weights_path: Path) -> NeuroWeaverModel:
        """Loads without executing stored code: JSON config and a weights-only state dict."""
        config = json.loads(Path(config_path).read_text())
        arch = Architecture(**config["architecture"])
        network = build_network(arch)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        return cls(arch, FeaturePipeline.from_dict(config["pipeline"]), network)

    @classmethod
    def load_dir(cls, directory: Path) -> NeuroWeaverModel:
        return cls.load(directory / CONFIG_FILE, directory / WEIGHTS_FILE)
