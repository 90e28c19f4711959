"""The training flow: data, Optuna search, baselines, registration, and the promotion decision."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field
from sqlalchemy.orm import Session

from monitoring import drift
from monitoring.config import Settings, get_settings
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.labels import TARGET, label_frame, samples_frame, xy
from monitoring.neuroweaver.search import SearchResult, SearchSettings, log_baselines, run_search
from monitoring.neuroweaver.training import (
    Split,
    TrainingDataError,
    check_split,
    labelled_rows_frame,
    split_by_time,
)
from monitoring.samples import METRICS, Sample
from monitoring.store import progress
from monitoring.store.engine import open_store
from monitoring.store.metrics import read_samples

EXPERIMENT = "neuroweaver"


@dataclass(frozen=True)
class ParentRun:
    experiment_id: str
    run_id: str


def configure_mlflow(settings: Settings, name: str = EXPERIMENT) -> str:
    """Points MLflow at the configured store; returns experiment `name`'s id, creating it on first
    use with its artifacts where `Settings.artifact_root` says (an MLflow server chooses its own)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A tracking server makes MLflow print each run's link on stdout, where the CLI prints JSON.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=settings.artifact_root()))
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent training
        return str(client.get_experiment_by_name(name).experiment_id)  # type: ignore[union-attr]


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def load_frame(window_days: float, data: list[dict[str, Any]] | None) -> Any:
    """Labelled rows given by the caller, or the store's last `window_days` labelled by the SLO rule."""
    if data is not None:
        return labelled_rows_frame(data)
    return label_frame(samples_frame(recent_samples(window_days)))


def recent_samples(window_days: float) -> list[Sample]:
    """The store's samples of the last `window_days`; TrainingDataError when there are none."""
    engine = open_store(get_settings().database_url)
    since = datetime.now(UTC) - timedelta(days=window_days)
    with Session(engine) as session:
        samples = read_samples(session, start=since)
    if not samples:
        raise TrainingDataError(
            f"the metric store has no samples in the last {window_days:g} days; ingest first"
        )
    return samples


@task(cache_policy=NO_CACHE)
def make_split(frame: Any) -> Split:
    split = split_by_time(frame)
    check_split(split)
    return split


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def open_parent_run(trials: int, window_days: float, rows: int) -> ParentRun:
    settings = get_settings()
    experiment_id = configure_mlflow(settings)
    name = f"training-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run = MlflowClient().create_run(experiment_id, run_name=name, tags={"kind": "training"})
    MlflowClient().log_batch(
        run.info.run_id,
        params=[
            mlflow.entities.Param(k, str(v))
            for k, v in {"trials": trials, "window_days": window_days, "rows": rows}.items()
        ],
    )
    return ParentRun(experiment_id, run.info.run_id)


@task(cache_policy=NO_CACHE)
def search(split: Split, settings: SearchSettings, parent: ParentRun, run_id: str) -> SearchResult:
    reporter = progress.ThrottledReporter(open_store(get_settings().database_url), run_id)
    return run_search(split, settings, parent.experiment_id, parent.run_id, reporter)


@task(cache_policy=NO_CACHE)
def baselines(split: Split, parent: ParentRun) -> dict[str, float]:
    return log_baselines(split, parent.experiment_id, parent.run_id)


def training_source(window_days: float, given: bool) -> dict[str, str]:
    """Where the training rows came from, for the version's MLflow dataset."""
    if given:
        return {"store": "labelled rows given by the caller"}
    return {"store": "automatrix metric store: metric_samples", "window_days": f"{window_days:g}"}


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def register_best(
    result: SearchResult, split: Split, parent: ParentRun, source: dict[str, str]
) -> str:
    """Registers the best model under the parent run, with its training rows as the run's dataset."""
    x_train, _ = xy(split.train)
    # Resuming a run needs the active experiment to be its own; another part of this process
    # (RelayCore's tuning, say) may have set a different one.
    mlflow.set_experiment(experiment_id=parent.experiment_id)
    with mlflow.start_run(run_id=parent.run_id):
        registry.log_training_data(split.train, source, "neuroweaver training rows", TARGET)
        registry.log_reference_profile(drift.profile_of(split.train, METRICS))
        return registry.register(result.model, get_settings().model_name, x_train)


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def promote(
    version: str, split: Split, parent: ParentRun
) -> tuple[registry.PromotionDecision, registry.Stage]:
    """The offline decision on the held-out rows; with SHADOW_SHARE > 0 a winner that has a
    champion to beat goes to @challenger, to be judged live (flows/shadow_review.py)."""
    settings = get_settings()
    x_test, y_test = xy(split.test)
    decision = registry.decide(settings.model_name, settings.model_alias, version, x_test, y_test)
    stage = registry.apply(
        decision, settings.model_name, settings.model_alias, shadow=settings.shadow_share > 0
    )
    tags = [mlflow.entities.RunTag(key, value) for key, value in decision.tags().items()]
    MlflowClient().log_batch(parent.run_id, tags=tags)  # one request, not one per tag
    return decision, stage


VERDICTS: dict[str, str] = {
    "champion": "promoted to @champion",
    "challenger": "won offline: @challenger, in shadow on live traffic until it proves better",
    "rejected": "not promoted (no alias): the champion stays",
}


def summary_markdown(
    result: SearchResult,
    scores: dict[str, float],
    decision: registry.PromotionDecision,
    stage: registry.Stage,
) -> str:
    lines = [
        "# NeuroWeaver training",
        f"- trials: {result.complete} complete, {result.pruned} pruned, {result.failed} failed",
        f"- best validation MSE: {result.val_loss:.5f}",
        f"- best parameters: `{result.params}`",
        "",
        "| model | test RMSE |",
        "|---|---|",
        f"| neuroweaver v{decision.new_version} | {decision.new_rmse:.5f} |",
    ]
    if decision.champion_rmse is not None:
        lines.append(f"| champion v{decision.champion_version} | {decision.champion_rmse:.5f} |")
    lines += [f"| baseline {name} | {value:.5f} |" for name, value in scores.items()]
    verdict = VERDICTS[stage]
    lines += ["", f"**Decision:** version {decision.new_version} {verdict}: {decision.reason}."]
    return "\n".join(lines)


def _finish(parent: ParentRun | None, status: str, metrics: dict[str, float]) -> None:
    if parent is None:
        return
    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(parent.run_id, key, value)
    client.set_terminated(parent.run_id, status=status)


@flow(name="neuroweaver-train", log_prints=True)
def train_flow(
    trials: Annotated[int, Field(ge=1, le=1000, description="Optuna trials for this worker")] = 20,
    timeout_s: Annotated[
        float, Field(gt=0, le=86_400, description="search time limit, seconds")
    ] = 480.0,
    window_days: Annotated[
        float, Field(gt=0, le=365, description="days of store history to train on")
    ] = 7.0,
    max_epochs: Annotated[
        int, Field(ge=1, le=500, description="upper bound of the searched epochs")
    ] = 20,
    data: list[dict[str, Any]] | None = None,
    study_name: str | None = None,
) -> dict[str, Any]:
    """Search, register, and promote if better. `data` trains on given labelled rows instead of the store."""
    settings = get_settings()
    logger = get_run_logger()
    run_id = uuid.uuid4().hex
    engine = open_store(settings.database_url)
    progress.start(engine, run_id, trials, str(runtime.flow_run.id or "") or None)
    for tag in runtime.flow_run.tags or []:
        if tag.startswith("request-id:"):  # started by an API request: say which one
            logger.info("started by API request %s", tag.removeprefix("request-id:"))
    parent: ParentRun | None = None
    try:
        split = make_split(load_frame(window_days, data))
        parent = open_parent_run(
            trials, window_days, len(split.train) + len(split.validation) + len(split.test)
        )
        search_settings = SearchSettings(
            trials=trials,
            timeout_s=timeout_s,
            storage=settings.optuna_storage,
            study_name=study_name or f"neuroweaver-{run_id[:12]}",
            max_epochs=max_epochs,
        )
        result = search(split, search_settings, parent, run_id)
        scores = baselines(split, parent)
        version = register_best(
            result, split, parent, training_source(window_days, data is not None)
        )
        decision, stage = promote(version, split, parent)
    except Exception as exc:
        progress.update(engine, run_id, state="FAILED", message=str(exc)[:2000])
        _finish(parent, "FAILED", {})
        raise
    metrics = {"best_val_loss": result.val_loss, "test_rmse_neuroweaver": decision.new_rmse}
    metrics |= {f"test_rmse_{name}": value for name, value in scores.items()}
    _finish(parent, "FINISHED", metrics)
    progress.update(
        engine,
        run_id,
        state="COMPLETED",
        model_version=version,
        best_loss=result.val_loss,
        message=decision.reason,
    )
    create_markdown_artifact(
        key="neuroweaver-training", markdown=summary_markdown(result, scores, decision, stage)
    )
    logger.info("version %s: %s", version, decision.reason)
    return {
        "run_id": run_id,
        "version": version,
        "promoted": stage == "champion",
        "stage": stage,
        "reason": decision.reason,
        "test_rmse": decision.new_rmse,
        "baselines": scores,
        "mlflow_run_id": parent.run_id,
    }
