"""RelayCore over the API, for the orchestration flow, which runs outside the API process.

The only code outside `serving/` that knows RelayCore's URLs: drain and restore an endpoint, and
read a service's endpoints' health from the API's status. Each call needs ORCHESTRATOR_API_URL.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from monitoring.config import OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionResult, Executor
from monitoring.healing.executors import endpoint_data
from monitoring.healing.policy import EndpointHealth


def relaycore_executors(
    settings: OrchestratorSettings, api_key: str | None
) -> dict[ActionKind, Executor]:
    """Drain and restore over the API; none when ORCHESTRATOR_API_URL is not set."""
    if not settings.orchestrator_api_url:
        return {}
    return {
        ActionKind.DRAIN_ENDPOINT: http_drain(settings, api_key),
        ActionKind.RESTORE_ENDPOINT: http_restore(settings, api_key),
    }


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
