"""The Optuna search over architecture and training settings, each trial a nested MLflow run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import optuna
import sqlalchemy.exc
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor

from monitoring.neuroweaver.labels import xy
from monitoring.neuroweaver.model import Architecture, NeuroWeaverModel
from monitoring.neuroweaver.training import Hyperparameters, Split, rmse, train_model

ProgressCallback = Callable[[int, int, float | None], None]  # trial, epoch, best loss so far


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 20
    timeout_s: float | None = 480.0
    storage: str = "sqlite:///data/optuna.db"
    study_name: str = "neuroweaver"
    max_epochs: int = 20
    prune: bool = True
    seed: int | None = None


@dataclass
class SearchResult:
    model: NeuroWeaverModel
    params: dict[str, object]
    val_loss: float
    complete: int
    pruned: int
    failed: int
    trial_losses: dict[int, float] = field(default_factory=dict)


def suggest(trial: optuna.Trial, max_epochs: int) -> Hyperparameters:
    arch = Architecture(
        layers=trial.suggest_int("layers", 1, 4),
        width=trial.suggest_categorical("width", [16, 32, 64, 128]),
        dropout=trial.suggest_float("dropout", 0.0, 0.3),
        activation=trial.suggest_categorical("activation", ["relu", "gelu", "silu", "tanh"]),
    )
    return Hyperparameters(
        arch=arch,
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        batch_size=trial.suggest_categorical("batch_size", [256, 512, 1024]),
        epochs=trial.suggest_int("epochs", min(3, max_epochs), max_epochs),
    )


class _TrialLogger:
    """Logs trials as nested runs through the client API, which is safe across threads."""

    def __init__(self, experiment_id: str, parent_run_id: str) -> None:
        self.client = MlflowClient()
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.lock = threading.Lock()

    def start(self, name: str, params: dict[str, object], kind: str = "trial") -> str:
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, MLFLOW_RUN_NAME: name, "kind": kind}
        with self.lock:
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
            batch = [Param(k, str(v)) for k, v in params.items()]
            self.client.log_batch(run.info.run_id, params=batch)
        return run.info.run_id

    def metric(self, run_id: str, key: str, value: float, step: int = 0) -> None:
        with self.lock:
            stamp = int(time.time() * 1000)
            self.client.log_batch(run_id, metrics=[Metric(key, value, stamp, step)])

    def end(self, run_id: str, status: str) -> None:
        with self.lock:
            self.client.set_terminated(run_id, status=status)


def open_study(settings: SearchSettings) -> optuna.Study:
    storage = _storage(settings.storage)
    pruner = (
        optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=settings.max_epochs, reduction_factor=3
        )
        if settings.prune
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=settings.study_name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=pruner,
        load_if_exists=True,  # a second worker joins the same study
    )


def _storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The study storage; two workers creating a fresh one at once race on its schema, so retry."""
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": _connect_args(url)}
            )
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _connect_args(url: str) -> dict[str, object]:
    return {"timeout": 60} if url.startswith("sqlite") else {}


def run_search(
    split: Split,
    settings: SearchSettings,
    experiment_id: str,
    parent_run_id: str,
    progress: ProgressCallback | None = None,
) -> SearchResult:
    """Runs this worker's share of the study; returns the best model it trained itself."""
    # A small MLP gains nothing from intra-op threads; one per worker keeps workers from contending.
    torch.set_num_threads(1)
    logger = _TrialLogger(experiment_id, parent_run_id)
    best: dict[str, object] = {}
    losses: dict[int, float] = {}
    mine: set[int] = set()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, settings.max_epochs)
        run_id = logger.start(f"trial-{trial.number}", _flat(params))
        trial.set_user_attr("mlflow_run_id", run_id)
        mine.add(trial.number)

        def on_epoch(epoch: int, loss: float) -> None:
            logger.metric(run_id, "val_loss", loss, step=epoch)
            trial.report(loss, epoch)
            if progress is not None:
                progress(trial.number, epoch, _best_so_far(best, loss))
            if trial.should_prune():
                logger.end(run_id, "KILLED")
                raise optuna.TrialPruned(f"epoch {epoch}: val_loss {loss:.5f}")

        try:
            model, curve = train_model(params, split, on_epoch, seed=trial.number)
        except optuna.TrialPruned:
            raise
        except Exception:
            logger.end(run_id, "FAILED")
            raise
        loss = min(curve)
        logger.metric(run_id, "best_val_loss", loss)
        logger.end(run_id, "FINISHED")
        losses[trial.number] = loss
        if "loss" not in best or loss < best["loss"]:  # type: ignore[operator]
            best.update(loss=loss, model=model, params=_flat(params))
        return loss

    study = open_study(settings)
    study.optimize(objective, n_trials=settings.trials, timeout=settings.timeout_s, catch=())
    if "model" not in best:
        raise RuntimeError(
            "no trial completed in this worker: raise the trial count or the timeout"
        )
    # Another worker sharing the study has its own trials; count only the ones run here.
    states = [t.state for t in study.trials if t.number in mine]
    return SearchResult(
        model=best["model"],  # type: ignore[arg-type]
        params=best["params"],  # type: ignore[arg-type]
        val_loss=float(best["loss"]),  # type: ignore[arg-type]
        complete=sum(s == optuna.trial.TrialState.COMPLETE for s in states),
        pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
        failed=sum(s == optuna.trial.TrialState.FAIL for s in states),
        trial_losses=losses,
    )


def _best_so_far(best: dict[str, object], current: float) -> float:
    return min(float(best["loss"]), current) if "loss" in best else current  # type: ignore[arg-type]


def _flat(params: Hyperparameters) -> dict[str, object]:
    flat = asdict(params)
    return {**flat.pop("arch"), **flat}


def log_baselines(split: Split, experiment_id: str, parent_run_id: str) -> dict[str, float]:
    """Fits the baselines on the same split and logs each as a nested run; returns test RMSEs."""
    logger = _TrialLogger(experiment_id, parent_run_id)
    x_train, y_train = xy(split.train)
    x_test, y_test = xy(split.test)
    baselines = {
        "constant": DummyRegressor(strategy="mean"),
        "hist_gradient_boosting": HistGradientBoostingRegressor(max_iter=200, random_state=0),
    }
    scores: dict[str, float] = {}
    for name, estimator in baselines.items():
        run_id = logger.start(
            f"baseline-{name}", {"estimator": type(estimator).__name__}, kind="baseline"
        )
        estimator.fit(x_train, y_train)
        scores[name] = rmse(np.clip(estimator.predict(x_test), 0, 1), y_test)
        logger.metric(run_id, "test_rmse", scores[name])
        logger.end(run_id, "FINISHED")
    return scores
