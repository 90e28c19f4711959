"""The MLflow registry side: log and register a model, load a version, and move `@champion`."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from monitoring.neuroweaver.model import CONFIG_FILE, WEIGHTS_FILE, NeuroWeaverModel
from monitoring.neuroweaver.training import rmse
from monitoring.samples import METRICS

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


class ModelLoadError(RuntimeError):
    """A registered version that cannot be loaded or does not answer sensibly."""


def register(model: NeuroWeaverModel, name: str, example: np.ndarray) -> str:
    """Logs `model` under the active MLflow run and registers it; returns the new version."""
    example_frame = pd.DataFrame(example[:5], columns=list(METRICS))
    output = pd.DataFrame({"performance_score": model.predict(example[:5])})
    with tempfile.TemporaryDirectory() as tmp:
        config, weights = model.save(Path(tmp))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"config": str(config), "weights": str(weights)},
            signature=infer_signature(example_frame, output),
            input_example=example_frame,
            registered_model_name=name,
            code_paths=None,
        )
    return str(info.registered_model_version)


def load_version(name: str, version_or_alias: str) -> tuple[NeuroWeaverModel, str]:
    """Loads `models:/name/version` or `models:/name@alias`; returns the model and its version."""
    client = MlflowClient()
    version = _resolve(client, name, version_or_alias)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp)
            )
            model = NeuroWeaverModel.load(_find(local, CONFIG_FILE), _find(local, WEIGHTS_FILE))
        except (MlflowException, OSError, KeyError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{name} version {version} cannot be loaded: {exc}") from exc
    return model, version


def _resolve(client: MlflowClient, name: str, version_or_alias: str) -> str:
    if version_or_alias.isdigit():
        return version_or_alias
    return str(client.get_model_version_by_alias(name, version_or_alias).version)


def _find(root: Path, filename: str) -> Path:
    matches = sorted(root.rglob(filename))
    if not matches:
        raise ModelLoadError(f"{filename} is missing from the model's artifacts")
    return matches[0]


def check_model(model: NeuroWeaverModel, example: np.ndarray) -> None:
    """Refuses a model whose answers on its example are not finite scores in [0, 1]."""
    scores = model.predict(example)
    if scores.shape != (len(example),) or not np.all(np.isfinite(scores)):
        raise ModelLoadError("the model's output on its input example is not finite")
    if scores.min() < 0 or scores.max() > 1:
        raise ModelLoadError("the model's output on its input example is outside [0, 1]")


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    new_version: str
    new_rmse: float
    champion_version: str | None
    champion_rmse: float | None
    reason: str

    def tags(self) -> dict[str, str]:
        return {f"promotion.{key}": str(value) for key, value in asdict(self).items()}


def current_champion(name: str, alias: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def decide(
    name: str, alias: str, new_version: str, x_test: np.ndarray, y_test: np.ndarray
) -> PromotionDecision:
    """Compares the new version with the champion on the same held-out rows, both reloaded from the registry."""
    new_model, _ = load_version(name, new_version)
    check_model(new_model, x_test[:10])
    new_rmse = rmse(new_model.predict(x_test), y_test)
    champion = current_champion(name, alias)
    if champion is None:
        return PromotionDecision(True, new_version, new_rmse, None, None, "no champion yet")
    try:
        old_model, _ = load_version(name, champion)
        old_rmse = rmse(old_model.predict(x_test), y_test)
    except ModelLoadError as exc:
        return PromotionDecision(
            True, new_version, new_rmse, champion, None, f"champion unusable: {exc}"
        )
    if new_rmse < old_rmse:
        reason = (
            f"test RMSE {new_rmse:.5f} < champion v{champion}'s {old_rmse:.5f} on the same rows"
        )
        return PromotionDecision(True, new_version, new_rmse, champion, old_rmse, reason)
    reason = f"test RMSE {new_rmse:.5f} >= champion v{champion}'s {old_rmse:.5f} on the same rows"
    return PromotionDecision(False, new_version, new_rmse, champion, old_rmse, reason)


def apply(
    decision: PromotionDecision, name: str, alias: str, challenger_alias: str = "challenger"
) -> None:
    """Moves `@alias` (or `@challenger`) and records the evidence on the version."""
    client = MlflowClient()
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, decision.new_version, key, value)
    target = alias if decision.promoted else challenger_alias
    client.set_registered_model_alias(name, target, decision.new_version)
