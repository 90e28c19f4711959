"""The RelayCore edge: the fleet's replicas registered and unregistered through the API's HTTP
endpoints (`/api/v2/relaycore/endpoints`), with the API key when one is set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from serving.fleet.plan import FleetFailed, ReplicaSpec, is_fleet_name, require_loopback

ENDPOINTS = "/api/v2/relaycore/endpoints"
TIMEOUT_S = 10.0


class RegistrationFailed(FleetFailed):
    """The API refused or could not be reached."""


def api_client(api_url: str, api_key: str | None = None) -> httpx.Client:
    """A client for the API on this machine, sending `X-API-Key` when a key is given."""
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=require_loopback(api_url), headers=headers, timeout=TIMEOUT_S)


class RelayRegistry:
    """Registers replicas as RelayCore endpoints; `client` has the API as its base URL."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def register(self, spec: ReplicaSpec) -> None:
        """Adds the replica; one left under its name by an earlier run is replaced."""
        body = {"name": spec.name, "url": spec.url, "service": spec.service}
        response = self._call("POST", ENDPOINTS, json=body)
        if response.status_code == 409:
            self.unregister(spec.name)
            response = self._call("POST", ENDPOINTS, json=body)
        _check(response, f"registering {spec.name}")

    def unregister(self, name: str) -> None:
        response = self._call("DELETE", f"{ENDPOINTS}/{name}")
        if response.status_code != 404:
            _check(response, f"unregistering {name}")

    def endpoints(self) -> list[dict[str, Any]]:
        response = self._call("GET", ENDPOINTS)
        _check(response, "listing endpoints")
        found: list[dict[str, Any]] = response.json()
        return found

    def remove_stale(self, services: Iterable[str], keep: Iterable[str]) -> list[str]:
        """Unregisters endpoints named like a replica of `services` but not in `keep` (left by
        an earlier, larger fleet: their ports are dead or someone else's)."""
        kept, names = set(keep), list(services)
        stale = [
            e["name"]
            for e in self.endpoints()
            if is_fleet_name(e["name"], names) and e["name"] not in kept
        ]
        for name in stale:
            self.unregister(name)
        return stale

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RegistrationFailed(
                f"the API is unreachable: {type(exc).__name__}: {exc}"
            ) from None


def _check(response: httpx.Response, what: str) -> None:
    if not response.is_success:
        raise RegistrationFailed(
            f"{what}: the API answered {response.status_code}: {response.text[:300]}"
        )
