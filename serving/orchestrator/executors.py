"""Executors that act inside the API process: RelayCore drain and restore, and the served model.

Handlers run the orchestrator in a worker thread; RelayCore belongs to the event loop, so drain
and restore hop onto the loop, where they change the shared desired state (every API process
applies it) rather than this process's router alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from monitoring.config import OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionResult, Executor
from monitoring.healing.executors import base_executors, endpoint_data, rollback_champion
from monitoring.healing.policy import EndpointHealth
from routing.status import EndpointStatus
from serving.relaycore.service import RelayCore
from serving.state import AppState

T = TypeVar("T")
LOOP_TIMEOUT_S = 10.0


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run_coroutine_threadsafe(call(), loop).result(LOOP_TIMEOUT_S)


def relay_drain(relay: RelayCore, loop: asyncio.AbstractEventLoop) -> Executor:
    """Drains the endpoint in RelayCore's shared desired state, as the flow's drain call does:
    kept registered (so it can be probed and restored), sent nothing new."""

    def drain(action: Action) -> ActionResult:
        name = str(action.params["endpoint"])
        try:
            spec = on_loop(loop, lambda: relay.set_drained(name, True))
        except Exception as exc:  # UnknownEndpoint and the like: a result, not a crash
            return ActionResult(False, f"RelayCore refused: {exc}")
        found = {"url": spec.url, "service": spec.service, "max_concurrency": spec.max_concurrency}
        return ActionResult(True, f"drained {name} in RelayCore", endpoint_data(found))

    return drain


def relay_restore(relay: RelayCore, loop: asyncio.AbstractEventLoop) -> Executor:
    """Routes to the endpoint again; one that is no longer registered (drained by removal,
    before drains kept endpoints) is registered again from what its drain recorded."""

    def restore(action: Action) -> ActionResult:
        p = action.params
        name = str(p["endpoint"])
        if name in {e.name for e in relay.desired_endpoints()}:
            try:
                on_loop(loop, lambda: relay.set_drained(name, False))
            except Exception as exc:
                return ActionResult(False, f"RelayCore refused: {exc}")
            return ActionResult(True, f"restored {name} in RelayCore")
        url = p.get("url")
        if not url:
            return ActionResult(False, f"no URL recorded for {name}: cannot restore")
        concurrency = int(p["max_concurrency"]) if p.get("max_concurrency") else None
        service = p.get("service")
        try:
            on_loop(loop, lambda: relay.add_endpoint(name, str(url), service, concurrency))
        except Exception as exc:
            return ActionResult(False, f"RelayCore refused: {exc}")
        return ActionResult(True, f"restored {name} in RelayCore (registered again)")

    return restore


def relay_endpoints(relay: RelayCore | None) -> Callable[[str], list[EndpointHealth]]:
    """A service's registered endpoints (drained ones too) with this process's RelayCore
    figures for each: its error rate, breaker and latency."""

    def endpoints(service: str) -> list[EndpointHealth]:
        if relay is None:
            return []
        live = {e.name: e for e in relay.router.status().endpoints}
        return [
            endpoint_health(spec.name, spec.url, spec.drained, live.get(spec.name))
            for spec in relay.desired_endpoints()
            if spec.service == service
        ]

    return endpoints


def endpoint_health(
    name: str, url: str, drained: bool, stats: EndpointStatus | None
) -> EndpointHealth:
    if stats is None:
        return EndpointHealth(name, 0.0, drained, url=url)
    latency = stats.latency_avg_ms if stats.latency_avg_ms is not None else stats.p50_ms
    return EndpointHealth(
        name,
        stats.error_rate,
        drained,
        latency_ms=latency,
        url=url,
        breaker=stats.breaker,
        recent_ok=stats.recent_ok,
    )


def rollback_and_reload(state: AppState) -> Executor:
    """Moves the alias, then has the served model follow at once rather than at the next poll."""

    def run(action: Action) -> ActionResult:
        outcome = rollback_champion(action)
        if outcome.ok and action.params.get("model") == state.holder.name:
            try:
                state.holder.reload()
            except Exception as exc:  # the poller will retry; the alias has moved regardless
                return ActionResult(True, f"{outcome.detail}; reload deferred: {exc}")
        return outcome

    return run


def api_executors(
    state: AppState,
    relay: RelayCore | None,
    loop: asyncio.AbstractEventLoop,
    settings: OrchestratorSettings,
) -> dict[ActionKind, Executor]:
    found = base_executors(settings)
    found[ActionKind.ROLLBACK_CHAMPION] = rollback_and_reload(state)
    if relay is not None:
        found[ActionKind.DRAIN_ENDPOINT] = relay_drain(relay, loop)
        found[ActionKind.RESTORE_ENDPOINT] = relay_restore(relay, loop)
    return found
