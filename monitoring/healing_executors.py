"""The real healing executors: MLflow alias moves, the scaling webhook, configured commands, and
RelayCore drain and restore over the API (for the flow, which runs outside the API process).

Each executor does its one thing once and reports an `ActionResult`; the healing engine records
it and never retries.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from monitoring.healing_actions import Action, ActionKind, ActionResult, Executor
from monitoring.healing_policy import EndpointHealth
from monitoring.orchestrator_config import OrchestratorSettings

WEBHOOK_TIMEOUT_S = 5.0
OUTPUT_TAIL = 500


def rollback_champion(action: Action) -> ActionResult:
    """Moves `@alias` from `from_version` to `to_version`, unless it moved meanwhile."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    p = action.params
    name, alias = str(p["model"]), str(p["alias"])
    client = MlflowClient()
    try:
        current = str(client.get_model_version_by_alias(name, alias).version)
        if current != str(p["from_version"]):
            return ActionResult(
                False, f"@{alias} is version {current} now, not {p['from_version']}: left alone"
            )
        client.get_model_version(name, str(p["to_version"]))
        client.set_registered_model_alias(name, alias, str(p["to_version"]))
    except MlflowException as exc:
        return ActionResult(False, f"MLflow refused: {exc.message}")
    return ActionResult(True, f"@{alias} of {name}: version {current} -> {p['to_version']}")


def scaling_webhook(action: Action) -> ActionResult:
    """POSTs the recommendation; any 2xx is success."""
    p = action.params
    body = {
        "service": action.service,
        "current_replicas": p["current"],
        "desired_replicas": p["desired"],
        "rule": p.get("rule"),
        "reason": action.reason,
        "action_id": action.id,
    }
    try:
        response = httpx.post(str(p["url"]), json=body, timeout=WEBHOOK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return ActionResult(False, f"webhook unreachable: {type(exc).__name__}: {exc}")
    ok = response.is_success
    return ActionResult(ok, f"webhook answered {response.status_code}")


def command_runner(settings: OrchestratorSettings) -> Executor:
    """Runs an argv, without a shell, only if it is one of the configured commands."""
    allowed = {
        tuple(argv)
        for c in settings.healing_commands.values()
        for argv in (c.argv, c.undo_argv)
        if argv
    }

    def run(action: Action) -> ActionResult:
        argv = tuple(str(a) for a in action.params.get("argv") or ())
        if argv not in allowed:
            return ActionResult(False, f"refused: {shlex.join(argv)!r} is not a configured command")
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=settings.healing_command_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ActionResult(False, f"{shlex.join(argv)}: {type(exc).__name__}: {exc}")
        output = (done.stdout + done.stderr)[-OUTPUT_TAIL:]
        return ActionResult(
            done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}: {output}".strip()
        )

    return run


# --- RelayCore through the API ------------------------------------------------------------


def _api(settings: OrchestratorSettings, api_key: str | None) -> httpx.Client:
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=str(settings.orchestrator_api_url), headers=headers, timeout=10)


def http_drain(settings: OrchestratorSettings, api_key: str | None) -> Executor:
    def drain(action: Action) -> ActionResult:
        name = str(action.params["endpoint"])
        try:
            with _api(settings, api_key) as client:
                response = client.delete(f"/api/v2/relaycore/endpoints/{name}")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"the API is unreachable: {exc}")
        if not response.is_success:
            return ActionResult(
                False, f"RelayCore refused ({response.status_code}): {response.text[:200]}"
            )
        return ActionResult(True, f"drained {name} from RelayCore", endpoint_data(response.json()))

    return drain


def http_restore(settings: OrchestratorSettings, api_key: str | None) -> Executor:
    def restore(action: Action) -> ActionResult:
        body = {k: action.params.get(k) for k in ("url", "service", "max_concurrency")}
        if not body["url"]:
            return ActionResult(False, "no URL recorded for this endpoint: cannot restore")
        body["name"] = action.params["endpoint"]
        try:
            with _api(settings, api_key) as client:
                response = client.post("/api/v2/relaycore/endpoints", json=body)
        except httpx.HTTPError as exc:
            return ActionResult(False, f"the API is unreachable: {exc}")
        if not response.is_success:
            return ActionResult(
                False, f"RelayCore refused ({response.status_code}): {response.text[:200]}"
            )
        return ActionResult(True, f"restored {body['name']} in RelayCore")

    return restore


def http_endpoints(settings: OrchestratorSettings) -> Callable[[str, float], list[EndpointHealth]]:
    """The health of a service's RelayCore endpoints, from the API's status; none if it is down."""

    def endpoints(service: str, anomaly_score: float) -> list[EndpointHealth]:
        try:
            found = httpx.get(f"{settings.orchestrator_api_url}/api/v2/relaycore/status", timeout=5)
            rows = found.json().get("endpoints", []) if found.is_success else []
        except (httpx.HTTPError, ValueError):
            return []
        return [
            EndpointHealth(str(e["name"]), float(e.get("error_rate") or 0.0), False, anomaly_score)
            for e in rows
            if e.get("service") == service
        ]

    return endpoints


def endpoint_data(found: Mapping[str, Any]) -> dict[str, Any]:
    """What a restore needs to register a drained endpoint again."""
    return {k: found.get(k) for k in ("url", "service", "max_concurrency")}


def base_executors(
    settings: OrchestratorSettings, api_key: str | None = None
) -> dict[ActionKind, Executor]:
    """Executors usable from any process; drain and restore only when the API URL is set."""
    found: dict[ActionKind, Executor] = {
        ActionKind.ROLLBACK_CHAMPION: rollback_champion,
        ActionKind.SCALING_WEBHOOK: scaling_webhook,
        ActionKind.RUN_COMMAND: command_runner(settings),
    }
    if settings.orchestrator_api_url:
        found[ActionKind.DRAIN_ENDPOINT] = http_drain(settings, api_key)
        found[ActionKind.RESTORE_ENDPOINT] = http_restore(settings, api_key)
    return found
