"""Tuning the adaptive policy: an Optuna search over `AdaptiveParams`, each trial a replay of the
latencies recently observed (routing.simulation on a virtual clock), logged to MLflow as one
parent run with a nested run per trial.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routing import AdaptiveParams, Observation
from routing.simulation import (
    SimEndpoint,
    SimResult,
    endpoints_from_observations,
    poisson_arrivals,
    simulate,
)

MIN_OBSERVATIONS = 30
WORKERS = 4  # simulated workers per endpoint; the load is scaled to them
LOAD = 0.7  # replayed arrivals at this share of the replayed endpoints' capacity
EXPERIMENT = "relaycore-tuning"


class NothingToReplay(LookupError):
    """Too few successful calls were observed to replay (HTTP 409)."""


@dataclass(frozen=True)
class Replay:
    endpoints: list[SimEndpoint]
    arrivals: list[tuple[float, int]]


def build_replay(
    observations: Sequence[Observation], messages: int = 1500, seed: int = 0
) -> Replay:
    """Simulated endpoints replaying each one's observed latencies, under Poisson arrivals."""
    ok = [o for o in observations if not o.failed]
    if len(ok) < MIN_OBSERVATIONS:
        raise NothingToReplay(
            f"{len(ok)} successful calls observed; at least {MIN_OBSERVATIONS} are needed to replay"
        )
    endpoints = endpoints_from_observations(ok, workers=WORKERS)
    per_endpoint: dict[str, list[float]] = {}
    for o in ok:
        per_endpoint.setdefault(o.endpoint, []).append(o.latency_s)
    capacity = sum(WORKERS / max(statistics.fmean(v), 1e-6) for v in per_endpoint.values())
    rate = LOAD * capacity
    arrivals = poisson_arrivals(random.Random(seed), lambda t: rate, messages / rate)
    return Replay(endpoints, arrivals)


def figures(result: SimResult) -> dict[str, float]:
    return {
        "p50_ms": result.percentile_ms(50),
        "p99_ms": result.percentile_ms(99),
        "p999_ms": result.percentile_ms(99.9),
        "success_rate": result.success_rate(),
    }


def cost(found: dict[str, float]) -> float:
    """p99 in ms, with every lost message weighing as much as ten seconds of tail."""
    p99 = found["p99_ms"] if not math.isnan(found["p99_ms"]) else 1e7
    return p99 + (1.0 - found["success_rate"]) * 10_000.0


def evaluate(replay: Replay, params: AdaptiveParams, seed: int = 0) -> dict[str, float]:
    result = simulate(
        replay.endpoints,
        replay.arrivals,
        "adaptive",
        seed=seed,
        params=params,
        max_concurrency=2 * WORKERS,
    )
    return figures(result)


def suggest(trial: Any) -> AdaptiveParams:
    return AdaptiveParams(
        decay_s=trial.suggest_float("decay_s", 0.1, 10.0, log=True),
        rise_s=trial.suggest_float("rise_s", 0.02, 2.0, log=True),
        stale_s=trial.suggest_float("stale_s", 1.0, 300.0, log=True),
        penalty_exponent=trial.suggest_float("penalty_exponent", 1.0, 4.0),
        concurrency_hint=trial.suggest_float("concurrency_hint", 1.0, 32.0, log=True),
        error_weight=trial.suggest_float("error_weight", 1.0, 50.0, log=True),
        sample_size=trial.suggest_int("sample_size", 2, 4),
        silence_factor=trial.suggest_float("silence_factor", 1.0, 10.0, log=True),
        probe_s=trial.suggest_float("probe_s", 1.0, 30.0, log=True),
        hold_margin=trial.suggest_float("hold_margin", 1.0, 3.0),
        tie_share=trial.suggest_float("tie_share", 0.0, 0.5),
    )


def optimize(
    observations: Sequence[Observation],
    current: AdaptiveParams,
    *,
    trials: int,
    timeout_s: float,
    storage: str | None,
) -> dict[str, Any]:
    """Blocking: searches, logs to MLflow, and returns before/after figures and the best params."""
    import mlflow
    import optuna

    replay = build_replay(observations)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        storage=storage,
        study_name=f"relaycore-{int(time.time() * 1000)}",
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    study.enqueue_trial(_searched(current))  # the search starts from what runs now
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="relaycore-optimize") as parent:
        before = evaluate(replay, current)
        mlflow.log_params(
            {
                "trials": trials,
                "timeout_s": timeout_s,
                "observations": len(observations),
                "messages": len(replay.arrivals),
            }
        )
        mlflow.log_metrics({f"before_{k}": v for k, v in before.items() if not math.isnan(v)})

        def objective(trial: optuna.Trial) -> float:
            params = suggest(trial)
            with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
                found = evaluate(replay, params)
                mlflow.log_params(_searched(params))
                mlflow.log_metrics({k: v for k, v in found.items() if not math.isnan(v)})
            return cost(found)

        study.optimize(objective, n_trials=trials, timeout=timeout_s)
        best = dataclasses.replace(current, **study.best_params)
        after = evaluate(replay, best)
        improved = cost(after) < cost(before)
        mlflow.log_metrics({f"after_{k}": v for k, v in after.items() if not math.isnan(v)})
        mlflow.log_params({f"best_{k}": v for k, v in _searched(best).items()})
        mlflow.set_tag("applied", str(improved))
    return {
        "before": before,
        "after": after if improved else before,
        "best": after,
        "params": _searched(best if improved else current),
        "applied": improved,
        "trials": len(study.trials),
        "study": study.study_name,
        "mlflow_run_id": parent.info.run_id,
        "replayed_messages": len(replay.arrivals),
        "best_params": best,
    }


def _searched(params: AdaptiveParams) -> dict[str, Any]:
    names = (
        "decay_s",
        "rise_s",
        "stale_s",
        "penalty_exponent",
        "concurrency_hint",
        "error_weight",
        "sample_size",
        "silence_factor",
        "probe_s",
        "hold_margin",
        "tie_share",
    )
    return {name: getattr(params, name) for name in names}
