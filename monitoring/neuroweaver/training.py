"""Time-ordered splits and the training loop for one set of hyperparameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from monitoring.neuroweaver.features import FeaturePipeline
from monitoring.neuroweaver.labels import HORIZON_MINUTES, TARGET, xy
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel, build_network
from monitoring.samples import METRICS, metric_problem

MIN_ROWS = 50


class TrainingDataError(ValueError):
    """The data cannot support a training: too little of it, or invalid rows."""


@dataclass(frozen=True)
class Hyperparameters:
    arch: Architecture
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 256
    epochs: int = 10


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def split_by_time(frame: pd.DataFrame, validation: float = 0.15, test: float = 0.15) -> Split:
    """Oldest rows train, then validation, then test; the label's horizon is cut at each border."""
    if len(frame) < MIN_ROWS:
        raise TrainingDataError(
            f"need at least {MIN_ROWS} labelled rows to train, got {len(frame)}"
        )
    order = frame.sort_values("timestamp", kind="stable") if "timestamp" in frame else frame
    n = len(order)
    cut_val, cut_test = int(n * (1 - validation - test)), int(n * (1 - test))
    if "timestamp" not in order:
        return Split(order.iloc[:cut_val], order.iloc[cut_val:cut_test], order.iloc[cut_test:])
    # A label looks HORIZON_MINUTES ahead, so rows that close to the next part would leak it.
    gap = pd.Timedelta(minutes=HORIZON_MINUTES)
    stamps = order["timestamp"]
    val_start, test_start = stamps.iloc[cut_val], stamps.iloc[cut_test]
    return Split(
        train=order[stamps < val_start - gap],
        validation=order[(stamps >= val_start) & (stamps < test_start - gap)],
        test=order[stamps >= test_start],
    )


def check_split(split: Split) -> None:
    for name in ("train", "validation", "test"):
        if len(getattr(split, name)) < 10:
            raise TrainingDataError(f"the {name} part has fewer than 10 rows; provide more data")


EpochCallback = Callable[[int, float], None]


def train_model(
    params: Hyperparameters, split: Split, on_epoch: EpochCallback | None = None, seed: int = 0
) -> tuple[NeuroWeaverModel, list[float]]:
    """Trains one network; `on_epoch(epoch, val_loss)` may raise to stop it (pruning)."""
    torch.manual_seed(seed)
    x_train, y_train = xy(split.train)
    pipeline = FeaturePipeline.fit(x_train)
    network = build_network(params.arch)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    features, targets = _tensors(pipeline, x_train, y_train)
    val_features, val_targets = _tensors(pipeline, *xy(split.validation))
    losses: list[float] = []
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(params.epochs):
        _one_epoch(network, optimiser, features, targets, params.batch_size, generator)
        losses.append(_mse(network, val_features, val_targets))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return NeuroWeaverModel(params.arch, pipeline, network), losses


def _tensors(
    pipeline: FeaturePipeline, x: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(pipeline.transform(x)), torch.from_numpy(
        y.astype(np.float32)
    ).unsqueeze(1)


def _one_epoch(
    network: nn.Module,
    optimiser: torch.optim.Optimizer,
    features: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    network.train()
    loss_fn = nn.MSELoss()
    order = torch.randperm(len(features), generator=generator)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        optimiser.zero_grad()
        loss = loss_fn(network(features[batch]), targets[batch])
        loss.backward()
        optimiser.step()
    network.eval()


def _mse(network: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.inference_mode():
        return float(nn.functional.mse_loss(network(features), targets))


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def labelled_rows_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """User-supplied labelled rows, validated; a bad row is named by its number."""
    checked = []
    for number, row in enumerate(rows):
        for name in (*METRICS, TARGET):
            problem = _field_problem(name, row.get(name))
            if problem:
                raise TrainingDataError(f"row {number}: {problem}")
        checked.append({name: float(row[name]) for name in (*METRICS, TARGET)})  # type: ignore[arg-type]
    return pd.DataFrame(checked, columns=[*METRICS, TARGET])


def _field_problem(name: str, value: object) -> str | None:
    if value is None:
        return f"{name} is missing"
    return _target_problem(value) if name == TARGET else metric_problem(name, value)


def _target_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        return f"{TARGET} must be a finite number, got {value!r}"
    if not 0.0 <= value <= 1.0:
        return f"{TARGET}={value} is outside [0, 1]"
    return None
