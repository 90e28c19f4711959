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
from serving.relaycore.service import RelayCore
from serving.state import AppState

T = TypeVar("T")
LOOP_TIMEOUT_S = 10.0


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run_coroutine_threadsafe(call(), loop).result(LOOP_TIMEOUT_S)


def relay_drain(relay: RelayCore, loop: asyncio.AbstractEventLoop) -> Executor:
    """Takes the endpoint out of RelayCore's shared desired state, as the flow's DELETE does."""

    def drain(action: Action) -> ActionResult:
        name = str(action.params["endpoint"])
        try:
            endpoint = on_loop(loop, lambda: relay.remove_endpoint(name))
        except Exception as exc:  # UnknownEndpoint and the like: a result, not a crash
            return ActionResult(False, f"RelayCore refused: {exc}")
        found = {
            "url": endpoint.url,
            "service": endpoint.service,
            "max_concurrency": endpoint.max_concurrency,
        }
        return ActionResult(True, f"drained {name} from RelayCore", endpoint_data(found))

    return drain


def relay_restore(relay: RelayCore, loop: asyncio.AbstractEventLoop) -> Executor:
    """Puts the endpoint back into the shared desired state from what its drain recorded."""

    def restore(action: Action) -> ActionResult:
        p = action.params
        name, url = str(p["endpoint"]), p.get("url")
        if not url:
            return ActionResult(False, f"no URL recorded for {name}: cannot restore")
        concurrency = int(p["max_concurrency"]) if p.get("max_concurrency") else None
        service = p.get("service")
        try:
            on_loop(loop, lambda: relay.add_endpoint(name, str(url), service, concurrency))
        except Exception as exc:
            return ActionResult(False, f"RelayCore refused: {exc}")
        return ActionResult(True, f"restored {name} in RelayCore")

    return restore


def relay_endpoints(relay: RelayCore | None) -> Callable[[str, float], list[EndpointHealth]]:
    def endpoints(service: str, anomaly_score: float) -> list[EndpointHealth]:
        if relay is None:
            return []
        return [
            EndpointHealth(e.name, e.error_rate, False, anomaly_score)
            for e in relay.router.status().endpoints
            if e.service == service
        ]

    return endpoints


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
