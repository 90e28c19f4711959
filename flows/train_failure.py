"""The failure-risk training flow: learn the risk from labelled history, judge it, register it.

The store's last days (metrics, incidents: the simulator's and those recorded through the API,
the detector's stored anomalies) become scored rows every five minutes, labelled by whether an
SLO breach or incident is under way within the horizon. The calibrated classifier is fitted on
the earlier days, its alarm threshold chosen on the next part, and it is judged on the last days
beside the hand-set rule (a nested run) and the champion. It becomes `failure-risk@champion`
only if it beats both there, and gets no alias otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.train import configure_mlflow, recent_samples
from monitoring.assess import failure_model, failure_training
from monitoring.assess.failure_alarms import AlarmScore, RiskPromotion, decide
from monitoring.assess.failure_model import HAND_SET, MODEL_NAME, STATE_FILE, FittedRisk
from monitoring.assess.failure_training import History, Predictor, Trained
from monitoring.config import get_orchestrator_settings, get_settings
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.labels import samples_frame
from monitoring.samples import METRICS, SERVICE_ROW
from monitoring.store.engine import open_store
from monitoring.store.incidents import list_incidents
from monitoring.store.tables import AnomalyRow

PYFUNC_CODE = Path(failure_model.__file__).with_name("failure_pyfunc.py")  # run, not imported
EXPERIMENT = MODEL_NAME


@dataclass(frozen=True)
class Judged:
    trained: Trained
    champion_version: str | None
    champion: AlarmScore | None
    window_days: float
    scorer: str


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def load_history(window_days: float) -> dict[str, History]:
    """Each service's own one-minute rows, incidents and stored anomalies of the last days."""
    frame = samples_frame(recent_samples(window_days))
    since = datetime.now(UTC) - timedelta(days=window_days)
    engine = open_store(get_settings().database_url)
    incidents = list_incidents(engine, since=since)
    with Session(engine) as session:
        query = select(AnomalyRow).where(AnomalyRow.replica == SERVICE_ROW, AnomalyRow.end >= since)
        anomalies = list(session.scalars(query))
    histories = {}
    for service, rows in frame.groupby("service", sort=True):
        index = pd.DatetimeIndex(rows["timestamp"]).tz_convert(UTC)
        metrics = pd.DataFrame(rows[list(METRICS)].to_numpy(), index=index, columns=list(METRICS))
        histories[str(service)] = History(
            metrics,
            [
                (pd.Timestamp(i.start), pd.Timestamp(i.end))
                for i in incidents
                if i.service == service
            ],
            [
                (pd.Timestamp(a.start), pd.Timestamp(a.end), a.score)
                for a in anomalies
                if a.service == service
            ],
        )
    return histories


@task(retries=1, retry_delay_seconds=3, cache_policy=NO_CACHE)
def load_scorer() -> tuple[Predictor | None, str]:
    """NeuroWeaver's champion, whose predictions are the score feature; else the observed score."""
    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    version = registry.alias_version(settings.model_name, settings.model_alias)
    if version is None:
        return None, "observed"
    try:
        model, _ = registry.load_version(settings.model_name, version)
    except registry.ModelLoadError as exc:
        get_run_logger().warning("the score feature is the observed one: %s", exc)
        return None, "observed"
    return model.predict, f"neuroweaver v{version}"


@task(cache_policy=NO_CACHE)
def fit_and_judge(
    histories: dict[str, History],
    horizon: int,
    scorer: tuple[Predictor | None, str],
    window_days: float,
) -> Judged:
    predictor, source = scorer
    kind = "observed" if predictor is None else "neuroweaver"
    trained = failure_training.train(histories, horizon, predictor, kind)
    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    version = registry.alias_version(MODEL_NAME, "champion")
    champion = load_champion(version)
    judged = None if champion is None else failure_training.judge(champion, trained)
    return Judged(trained, version if champion else None, judged, window_days, source)


def load_champion(version: str | None) -> FittedRisk | None:
    """The champion's state; None when there is none or it cannot be read (then it is replaced)."""
    if version is None:
        return None
    try:
        return failure_model.load_version(version)
    except registry.ModelLoadError:
        return None


def log_training_rows(judged: Judged) -> None:
    """The scored rows the version learned from, as the run's MLflow dataset (source, window,
    rows, digest)."""
    rows = judged.trained.part("train").drop(columns=["rule"])
    source = {
        "store": "automatrix metric store: metric_samples, incidents, anomalies",
        "window_days": f"{judged.window_days:g}",
    }
    registry.log_training_data(rows, source, name=f"{MODEL_NAME} training rows", targets="label")


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def register(judged: Judged) -> tuple[str, RiskPromotion, str]:
    """One parent run (the learned model) with the hand-set rule nested on the same split; the
    state registered, and the alias it earned moved."""
    experiment_id = configure_mlflow(get_settings(), EXPERIMENT)
    trained = judged.trained
    decision = decide(trained.candidate, trained.rule, judged.champion, judged.champion_version)
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name=f"failure-risk-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.set_tags({"kind": "training", **decision.tags()})
        mlflow.log_params(run_params(judged))
        mlflow.log_metrics(trained.candidate.metrics("test_"))
        if judged.champion is not None:
            mlflow.log_metrics(judged.champion.metrics("champion_test_"))
        log_training_rows(judged)
        mlflow.log_table(evidence_frame(judged), artifact_file="evidence.json")
        with mlflow.start_run(run_name=HAND_SET, nested=True):
            mlflow.set_tags({"kind": "baseline", "baseline": HAND_SET})
            mlflow.log_params({"threshold": trained.rule_threshold})
            mlflow.log_metrics(trained.rule.metrics("test_"))
        version = registry.register_state(
            MODEL_NAME,
            trained.state.to_dict(),
            PYFUNC_CODE,
            STATE_FILE,
            failure_model.pyfunc_signature(),
        )
        run_id = run.info.run_id
    registry.record_decision(MODEL_NAME, version, decision.promoted, decision.tags())
    return version, decision, run_id


def run_params(judged: Judged) -> dict[str, Any]:
    trained = judged.trained
    return {
        "window_days": judged.window_days,
        "horizon_minutes": trained.state.horizon_minutes,
        "threshold": trained.state.threshold,
        "score_source": judged.scorer,
        "services": len(trained.events),
        "rows": len(trained.rows),
        "validation_start": trained.split.validation_start.isoformat(),
        "test_start": trained.split.test_start.isoformat(),
    }


def evidence_frame(judged: Judged) -> pd.DataFrame:
    """Learned, hand-set rule and champion side by side on the test days."""
    scores = {"learned": judged.trained.candidate, HAND_SET: judged.trained.rule}
    if judged.champion is not None:
        scores[f"champion v{judged.champion_version}"] = judged.champion
    return pd.DataFrame([{"model": name, **vars(s)} for name, s in scores.items()])


def summary_markdown(judged: Judged, version: str, decision: RiskPromotion) -> str:
    trained = judged.trained
    lines = [
        "# Failure-risk training",
        f"- horizon: {trained.state.horizon_minutes} min; score feature: {judged.scorer}",
        f"- rows: {len(trained.rows)} over {len(trained.events)} services; validation from"
        f" {trained.split.validation_start:%Y-%m-%d %H:%M}, test from"
        f" {trained.split.test_start:%Y-%m-%d %H:%M} UTC",
        "",
        "| on the test days | threshold | precision | recall | lead (min) | false alarms/day"
        " | Brier |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in evidence_frame(judged).itertuples():
        lead = "" if row.mean_lead_minutes is None else f"{row.mean_lead_minutes:.1f}"
        lines.append(
            f"| {row.model} | {row.threshold:.2f} | {row.precision:.3f} | {row.recall:.3f}"
            f" | {lead} | {row.false_alarms_per_day:.2f} | {row.brier:.4f} |"
        )
    verdict = (
        "promoted to @champion"
        if decision.promoted
        else "not promoted (no alias): the champion stays"
    )
    lines += ["", f"**Decision:** version {version} {verdict}: {decision.reason}."]
    return "\n".join(lines)


@flow(name="failure-risk-train", log_prints=True)
def train_failure_flow(
    window_days: Annotated[
        float, Field(ge=1, le=365, description="days of store history to learn from")
    ] = 14.0,
    horizon_minutes: Annotated[
        int | None,
        Field(ge=1, le=1440, description="minutes ahead; default RISK_HORIZON_MINUTES"),
    ] = None,
) -> dict[str, Any]:
    """Learn the failure risk, judge it beside the hand-set rule, register, promote if better."""
    logger = get_run_logger()
    horizon = horizon_minutes or get_orchestrator_settings().risk_horizon_minutes
    judged = fit_and_judge(load_history(window_days), horizon, load_scorer(), window_days)
    version, decision, run_id = register(judged)
    create_markdown_artifact(
        key="failure-risk-training", markdown=summary_markdown(judged, version, decision)
    )
    logger.info("failure-risk version %s: %s", version, decision.reason)
    return {
        "version": version,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "threshold": judged.trained.state.threshold,
        "learned": vars(judged.trained.candidate),
        "hand_set_rule": vars(judged.trained.rule),
        "champion": None if judged.champion is None else vars(judged.champion),
        "mlflow_run_id": run_id,
    }
