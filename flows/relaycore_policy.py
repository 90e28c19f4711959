"""The RelayCore policy as a registered model, without Prefect: search the adaptive policy's
knobs on the calls RelayCore observed, judge them on later calls, register them as
`relaycore-policy`, and read a version back. The API imports this at start, so Prefect loads
only when a training runs (flows/train_relaycore.py is the flow).

The observed calls come from the API (`GET /api/v2/relaycore/observations`). The earlier 70% are
replayed for an Optuna search (one nested MLflow run per trial), the last 30% judge the best
candidate beside the defaults and the champion. The knobs become `relaycore-policy@champion`
only if they beat both there, no alias otherwise; every API process routes with the
champion (serving/relaycore/policy.py). `POST /api/v2/relaycore/optimize` runs the same
`tune_and_register` on the process's own observations.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from monitoring.config import get_settings
from monitoring.neuroweaver import registry
from routing import AdaptiveParams, Observation
from routing import tuning as policy

MODEL_NAME = "relaycore-policy"
STATE_FILE = "policy.json"
EXPERIMENT = MODEL_NAME
PYFUNC_CODE = Path(__file__).with_name("relaycore_pyfunc.py")  # run by MLflow, not imported


def load_version(version: str) -> AdaptiveParams:
    """One registered version's knobs; ModelLoadError when they cannot be read or are invalid."""
    state = registry.load_state(MODEL_NAME, version, STATE_FILE)
    try:
        return policy.params_from_state(state)
    except (TypeError, ValueError) as exc:
        raise registry.ModelLoadError(f"{MODEL_NAME} version {version}: {exc}") from exc


def champion() -> tuple[str, AdaptiveParams] | None:
    """The champion's version and knobs; None when there is none or it cannot be read."""
    version = registry.alias_version(MODEL_NAME, "champion")
    if version is None:
        return None
    try:
        return version, load_version(version)
    except registry.ModelLoadError:
        return None


def search(
    replay: policy.Replay, start: AdaptiveParams, trials: int, timeout_s: float, storage: str | None
) -> tuple[AdaptiveParams, str, int]:
    """Optuna over the searched knobs on the search replay, from `start`; one nested run each."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        storage=storage,
        study_name=f"relaycore-{int(time.time() * 1000)}",
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    study.enqueue_trial(policy.searched(start))  # the search starts from what runs now
    parent = mlflow.active_run()
    experiment_id = None if parent is None else parent.info.experiment_id

    def objective(trial: optuna.Trial) -> float:
        params = policy.suggest(trial)
        with mlflow.start_run(
            run_name=f"trial-{trial.number}", nested=True, experiment_id=experiment_id
        ):
            found = policy.evaluate(replay, params)
            mlflow.log_params(policy.searched(params))
            mlflow.log_metrics(finite(found))
        return policy.cost(found)

    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    best = AdaptiveParams(**{**asdict(start), **study.best_params})
    return best, study.study_name, len(study.trials)


def finite(figures: dict[str, float], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in figures.items() if not math.isnan(v)}


def log_observations(observations: Sequence[Observation], origin: str) -> None:
    """The replayed calls as the run's MLflow dataset: where from, over how long, how many, digest."""
    rows = pd.DataFrame([asdict(o) for o in observations])
    span = float(rows["at"].max() - rows["at"].min()) if len(rows) else 0.0
    source = {"observed_by": origin, "span_s": f"{span:.1f}"}
    registry.log_training_data(rows, source, name=f"relaycore calls ({len(rows)})")


def tune_and_register(
    observations: Sequence[Observation],
    current: AdaptiveParams,
    *,
    trials: int,
    timeout_s: float,
    storage: str | None,
    origin: str,
) -> dict[str, Any]:
    """Blocking: split, search, judge, register and move the alias the candidate earned.
    NothingToReplay when too few calls were observed."""
    from flows.train import configure_mlflow  # with Prefect: loaded when a training runs

    parts = policy.split(observations)
    experiment_id = configure_mlflow(get_settings(), EXPERIMENT)
    held = champion()
    with mlflow.start_run(experiment_id=experiment_id, run_name="relaycore-policy") as run:
        mlflow.log_params(
            {"trials": trials, "timeout_s": timeout_s, "observations": len(observations)}
            | {"search_calls": parts.search_calls, "validation_calls": parts.validation_calls}
        )
        log_observations(observations, origin)
        best, study, ran = search(parts.search, current, trials, timeout_s, storage)
        judged = policy.judge(parts.validation, best, None if held is None else held[1])
        log_judgement(judged, best)
        version = registry.register_state(
            MODEL_NAME, policy.state_of(best), PYFUNC_CODE, STATE_FILE
        )
    registry.record_decision(MODEL_NAME, version, judged.promoted, decision_tags(judged, held))
    return {
        "version": version,
        "promoted": judged.promoted,
        "applied": judged.promoted,
        "reason": judged.reason,
        "before": judged.baseline(),
        "after": judged.candidate if judged.promoted else judged.baseline(),
        "candidate": judged.candidate,
        "defaults": judged.default,
        "champion": None if held is None else {"version": held[0], **judged.baseline()},
        "params": policy.searched(best if judged.promoted else current),
        "trials": ran,
        "study": study,
        "mlflow_run_id": run.info.run_id,
        "replayed_messages": len(parts.validation.arrivals),
        "best_params": best,
    }


def log_judgement(judged: policy.Judgement, best: AdaptiveParams) -> None:
    mlflow.log_metrics(finite(judged.candidate, "validation_candidate_"))
    mlflow.log_metrics(finite(judged.default, "validation_default_"))
    if judged.champion is not None:
        mlflow.log_metrics(finite(judged.champion, "validation_champion_"))
    # The figures the seed's optimize logged, kept for dashboards that read them.
    mlflow.log_metrics(finite(judged.baseline(), "before_") | finite(judged.candidate, "after_"))
    mlflow.log_params({f"best_{k}": v for k, v in policy.searched(best).items()})
    mlflow.set_tags({"kind": "training", "applied": str(judged.promoted)})


def decision_tags(
    judged: policy.Judgement, held: tuple[str, AdaptiveParams] | None
) -> dict[str, str]:
    return {
        "promotion.promoted": str(judged.promoted).lower(),
        "promotion.reason": judged.reason,
        "promotion.champion_version": "" if held is None else held[0],
        "promotion.metric": "validation cost: p99 ms + 10 s per lost message",
        "promotion.candidate_cost": f"{policy.cost(judged.candidate):.3f}",
        "promotion.baseline_cost": f"{policy.cost(judged.baseline()):.3f}",
        "promotion.evidence": json.dumps(
            {"candidate": judged.candidate, "defaults": judged.default, "champion": judged.champion}
        ),
    }
