"""The capacity forecaster's training flow: fit per-series choices, judge them, register, promote.

Each service's CPU and request series (5-minute means of the store's history) gets the method
its own backtest chose. The candidate is fitted on the history minus its last day and judged on
that day beside the champion; it becomes `capacity-forecaster@champion` only if its held-out
MASE (against the daily seasonal naive) is no worse, and gets no alias otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.train import configure_mlflow, recent_samples
from monitoring.assess import capacity_model
from monitoring.assess.capacity_model import (
    MODEL_NAME,
    STATE_FILE,
    CapacityPromotion,
    Evaluation,
    FittedForecaster,
)
from monitoring.config import get_settings
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.labels import samples_frame
from monitoring.neuroweaver.training import TrainingDataError

PYFUNC_CODE = Path(capacity_model.__file__).with_name("capacity_pyfunc.py")  # run, not imported
EXPERIMENT = MODEL_NAME


@dataclass(frozen=True)
class Judged:
    candidate: FittedForecaster
    candidate_eval: Evaluation
    champion_version: str | None
    champion_eval: Evaluation | None
    series: dict[str, pd.Series]  # what the candidate was fitted and judged on


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def load_series(window_days: float) -> dict[str, pd.Series]:
    """`service/metric` -> 5-minute series over the store's last `window_days`."""
    frame = samples_frame(recent_samples(window_days))
    frames = {
        str(service): rows.set_index(pd.DatetimeIndex(rows["timestamp"])).sort_index()
        for service, rows in frame.groupby("service", sort=True)
    }
    return capacity_model.series_table(frames)


@task(cache_policy=NO_CACHE)
def fit_and_judge(table: dict[str, pd.Series], horizon: int) -> Judged:
    candidate = capacity_model.fit(capacity_model.without_last(table, horizon), horizon)
    if not candidate.choices:
        reasons = "; ".join(f"{k}: {v}" for k, v in sorted(candidate.skipped.items()))
        raise TrainingDataError(f"no series has enough history to forecast: {reasons}")
    judged = {k: v for k, v in table.items() if k in candidate.choices}
    champion_version = registry.alias_version(MODEL_NAME, "champion")
    champion = load_champion(champion_version)
    return Judged(
        candidate,
        capacity_model.evaluate(candidate, judged, horizon),
        champion_version if champion else None,
        capacity_model.evaluate(champion, judged, horizon) if champion else None,
        table,
    )


def load_champion(version: str | None) -> FittedForecaster | None:
    """The champion's state; None when there is none or it cannot be read (then it is replaced)."""
    if version is None:
        return None
    try:
        return capacity_model.load_version(version)
    except registry.ModelLoadError:
        return None


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def register(judged: Judged, window_days: float) -> tuple[str, CapacityPromotion, str]:
    """Logs the run with its evidence, registers the state, and moves the alias it earned."""
    experiment_id = configure_mlflow(get_settings(), EXPERIMENT)
    decision = capacity_model.decide(
        judged.candidate_eval, judged.champion_eval, judged.champion_version
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(run_name=f"capacity-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.set_tags({"kind": "training", **decision.tags()})
        mlflow.log_params(
            {
                "window_days": window_days,
                "horizon": judged.candidate.horizon,
                "series": len(judged.candidate.choices),
            }
        )
        mlflow.log_metrics(run_metrics(judged))
        mlflow.log_table(evidence_frame(judged), artifact_file="evidence.json")
        registry.log_training_data(
            series_rows(judged.series),
            {"store": "automatrix metric store: metric_samples", "window_days": f"{window_days:g}"},
            name=f"{MODEL_NAME} series",
        )
        version = registry.register_state(
            MODEL_NAME,
            judged.candidate.to_dict(),
            PYFUNC_CODE,
            STATE_FILE,
            capacity_model.pyfunc_signature(judged.candidate.horizon),
        )
        run_id = run.info.run_id
    registry.record_decision(MODEL_NAME, version, decision.promoted, decision.tags())
    return version, decision, run_id


def series_rows(table: dict[str, pd.Series]) -> pd.DataFrame:
    """The series as one long frame (`series`, `timestamp`, `value`), for the run's dataset."""
    parts = [
        pd.DataFrame({"series": key, "timestamp": values.index, "value": values.to_numpy()})
        for key, values in sorted(table.items())
    ]
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["series", "timestamp", "value"])
    )


def run_metrics(judged: Judged) -> dict[str, float]:
    metrics = {"series_worse_than_seasonal_naive": float(judged.candidate_eval.worse_than_naive())}
    if (value := judged.candidate_eval.geometric_mean) is not None:
        metrics["heldout_mase"] = value
    if judged.champion_eval and (old := judged.champion_eval.geometric_mean) is not None:
        metrics["champion_heldout_mase"] = old
    return metrics


def evidence_frame(judged: Judged) -> pd.DataFrame:
    """One row per series: the method chosen, its own backtest, and the held-out day's MASE."""
    rows = []
    for key, choice in sorted(judged.candidate.choices.items()):
        champion = judged.champion_eval.mase.get(key) if judged.champion_eval else None
        rows.append(
            {
                "series": key,
                "method": choice.method,
                "heldout_mase": judged.candidate_eval.mase.get(key),
                "champion_heldout_mase": champion,
                "backtest": {k: round(v, 4) for k, v in choice.backtest.items()},
            }
        )
    return pd.DataFrame(rows)


def summary_markdown(judged: Judged, version: str, decision: CapacityPromotion) -> str:
    lines = [
        "# Capacity forecaster training",
        f"- series fitted: {len(judged.candidate.choices)}, skipped: {len(judged.candidate.skipped)}",
        "",
        "| series | chosen method | held-out MASE | champion's |",
        "|---|---|---|---|",
    ]
    for row in evidence_frame(judged).itertuples():
        old = "" if row.champion_heldout_mase is None else f"{row.champion_heldout_mase:.3f}"
        new = "" if row.heldout_mase is None else f"{row.heldout_mase:.3f}"
        lines.append(f"| {row.series} | {row.method} | {new} | {old} |")
    verdict = (
        "promoted to @champion"
        if decision.promoted
        else "not promoted (no alias): the champion stays"
    )
    lines += ["", f"**Decision:** version {version} {verdict}: {decision.reason}."]
    return "\n".join(lines)


@flow(name="capacity-forecaster-train", log_prints=True)
def train_capacity_flow(
    window_days: Annotated[
        float,
        Field(ge=3, le=365, description="days of store history (21 or more for weekly cycles)"),
    ] = 21.0,
    horizon_minutes: Annotated[
        int, Field(ge=5, le=10_080, description="forecast horizon judged on, minutes")
    ] = 1440,
) -> dict[str, Any]:
    """Fit each series' forecasting method, judge it on the last day, register, promote if better."""
    logger = get_run_logger()
    horizon = max(1, horizon_minutes // int(capacity_model.STEP.total_seconds() // 60))
    judged = fit_and_judge(load_series(window_days), horizon)
    version, decision, run_id = register(judged, window_days)
    create_markdown_artifact(
        key="capacity-forecaster-training", markdown=summary_markdown(judged, version, decision)
    )
    logger.info("capacity-forecaster version %s: %s", version, decision.reason)
    return {
        "version": version,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "heldout_mase": decision.candidate,
        "champion_heldout_mase": decision.champion,
        "series": sorted(judged.candidate.choices),
        "skipped": judged.candidate.skipped,
        "mlflow_run_id": run_id,
    }
