"""RelayCore over the API, for the orchestration flow, which runs outside the API process.

The only code outside `serving/` that knows RelayCore's URLs: drain and restore an endpoint, and
read RelayCore's figures per endpoint from the API's status (these need ORCHESTRATOR_API_URL),
and read the calls RelayCore observed, which the policy's training replays.
Which endpoints a service has (and which are drained) is RelayCore's desired state, read from
the store, so the replica count is right even without the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.engine import Engine

from monitoring.config import OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionResult, Executor
from monitoring.healing.executors import endpoint_data
from monitoring.healing.policy import EndpointHealth
from monitoring.orchestrator.replicas import stored_endpoints
from routing import Observation


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


def _refused(response: httpx.Response) -> ActionResult:
    return ActionResult(False, f"RelayCore refused ({response.status_code}): {response.text[:200]}")


def http_drain(settings: OrchestratorSettings, api_key: str | None) -> Executor:
    """Drains the endpoint (kept registered, sent nothing new); records what a restore needs."""

    def drain(action: Action) -> ActionResult:
        name = str(action.params["endpoint"])
        try:
            with _api(settings, api_key) as client:
                response = client.post(f"/api/v2/relaycore/endpoints/{quote(name, safe='')}/drain")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"the API is unreachable: {exc}")
        if not response.is_success:
            return _refused(response)
        return ActionResult(True, f"drained {name} in RelayCore", endpoint_data(response.json()))

    return drain


def http_restore(settings: OrchestratorSettings, api_key: str | None) -> Executor:
    """Routes to the endpoint again; one no longer registered (drained by removal, before drains
    kept endpoints) is registered again from what its drain recorded."""

    def restore(action: Action) -> ActionResult:
        name = str(action.params["endpoint"])
        body = {k: action.params.get(k) for k in ("url", "service", "max_concurrency")}
        try:
            with _api(settings, api_key) as client:
                path = f"/api/v2/relaycore/endpoints/{quote(name, safe='')}/undrain"
                response = client.post(path)
                if response.status_code == 404 and body["url"]:
                    response = client.post(
                        "/api/v2/relaycore/endpoints", json={**body, "name": name}
                    )
        except httpx.HTTPError as exc:
            return ActionResult(False, f"the API is unreachable: {exc}")
        if not response.is_success:
            return _refused(response)
        return ActionResult(True, f"restored {name} in RelayCore")

    return restore


def http_endpoints(
    settings: OrchestratorSettings, engine: Engine
) -> Callable[[str], list[EndpointHealth]]:
    """A service's registered endpoints (RelayCore's desired state, in the store) with the API's
    RelayCore figures for each (error rate, breaker, latency); without the API, the names alone."""
    stored = stored_endpoints(engine)

    def endpoints(service: str) -> list[EndpointHealth]:
        found = stored(service)
        live = _live_figures(settings) if settings.orchestrator_api_url else {}
        return [_with_figures(e, live.get(e.name)) for e in found]

    return endpoints


def _live_figures(settings: OrchestratorSettings) -> dict[str, dict[str, Any]]:
    try:
        found = httpx.get(f"{settings.orchestrator_api_url}/api/v2/relaycore/status", timeout=5)
        rows = found.json().get("endpoints", []) if found.is_success else []
    except (httpx.HTTPError, ValueError):
        return {}
    return {str(e["name"]): e for e in rows if isinstance(e, dict) and "name" in e}


def _with_figures(endpoint: EndpointHealth, stats: dict[str, Any] | None) -> EndpointHealth:
    if stats is None or endpoint.drained:
        return endpoint
    latency = stats.get("latency_avg_ms")
    latency = stats.get("p50_ms") if latency is None else latency
    return replace(
        endpoint,
        error_rate=float(stats.get("error_rate") or 0.0),
        breaker=str(stats.get("breaker") or "closed"),
        latency_ms=None if latency is None else float(latency),
        recent_ok=None if stats.get("recent_ok") is None else float(stats["recent_ok"]),
    )


class ObservationsUnavailable(RuntimeError):
    """The API could not be asked for RelayCore's observed calls."""


def fetch_observations(api_url: str, api_key: str | None) -> list[Observation]:
    """The calls one API process's RelayCore observed (its latency record), oldest first."""
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.get(
            f"{api_url.rstrip('/')}/api/v2/relaycore/observations", headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        raise ObservationsUnavailable(f"the API at {api_url} is unreachable: {exc}") from None
    if not response.is_success:
        raise ObservationsUnavailable(
            f"the API at {api_url} refused ({response.status_code}): {response.text[:200]}"
        )
    return [Observation(**row) for row in response.json()["observations"]]
