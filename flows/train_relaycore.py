"""The RelayCore policy training flow (`relaycore-policy-train`): the calls an API's RelayCore
observed, read over HTTP, searched on and judged by flows/relaycore_policy.py, and the decision
left as a markdown artifact.

The earlier 70% of the calls are replayed for an Optuna search (one nested MLflow run per
trial), the last 30% judge the best candidate beside the defaults and the champion. The knobs
become `relaycore-policy@champion` only if they beat both there, no alias otherwise; every
API process routes with the champion (serving/relaycore/policy.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.relaycore_client import fetch_observations
from flows.relaycore_policy import champion, tune_and_register
from monitoring.config import get_orchestrator_settings, get_settings
from routing import AdaptiveParams, Observation

DEFAULT_API_URL = "http://127.0.0.1:8000"


@task(retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def load_observations(api_url: str) -> list[Observation]:
    """The calls the API's RelayCore observed."""
    key = get_settings().api_key
    return fetch_observations(api_url, key.get_secret_value() if key else None)


@task(cache_policy=NO_CACHE)
def tune(
    observations: list[Observation], trials: int, timeout_s: float, origin: str
) -> dict[str, Any]:
    held = champion()
    start = AdaptiveParams() if held is None else held[1]
    found = tune_and_register(
        observations,
        start,
        trials=trials,
        timeout_s=timeout_s,
        storage=get_settings().optuna_storage,
        origin=origin,
    )
    found.pop("best_params")
    return found


def summary_markdown(found: dict[str, Any]) -> str:
    lines = [
        "# RelayCore policy training",
        f"- {found['trials']} trials on the earlier 70% of the observed calls; judged on the rest",
        "",
        "| on the validation replay | p50 ms | p99 ms | p99.9 ms | success |",
        "|---|---|---|---|---|",
    ]
    rows = {"candidate": found["candidate"], "defaults": found["defaults"]}
    if found["champion"] is not None:
        rows[f"champion v{found['champion']['version']}"] = found["champion"]
    for name, f in rows.items():
        lines.append(
            f"| {name} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['p999_ms']:.2f}"
            f" | {f['success_rate']:.4f} |"
        )
    verdict = (
        "promoted to @champion"
        if found["promoted"]
        else "not promoted (no alias): the champion stays"
    )
    lines += ["", f"**Decision:** version {found['version']} {verdict}: {found['reason']}."]
    return "\n".join(lines)


@flow(name="relaycore-policy-train", log_prints=True)
def train_relaycore_flow(
    trials: Annotated[int, Field(ge=1, le=500, description="Optuna trials")] = 30,
    timeout_s: Annotated[float, Field(gt=0, le=3600, description="search time limit")] = 120.0,
    api_url: Annotated[
        str | None,
        Field(description="the API whose RelayCore calls are replayed; ORCHESTRATOR_API_URL"),
    ] = None,
) -> dict[str, Any]:
    """Search the adaptive policy on observed calls, judge on later ones, register, promote."""
    url = api_url or get_orchestrator_settings().orchestrator_api_url or DEFAULT_API_URL
    found = tune(load_observations(url), trials, timeout_s, url)
    create_markdown_artifact(key="relaycore-policy-training", markdown=summary_markdown(found))
    get_run_logger().info("relaycore-policy version %s: %s", found["version"], found["reason"])
    return found
