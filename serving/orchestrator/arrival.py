"""Detection on arrival in the API process, for the push endpoint (POST /api/v2/metrics).

`react_on_arrival(app, services)` scores what just arrived for those services and their
replicas, then drains and restores replicas on their own evidence, as the ingestion flow's
`react_on_arrival` task does. The API is a long-lived process, so each series' warmed detector
is kept between pushes and a push costs only its new rows. It must be awaited on the app's event
loop (RelayCore's drain and restore hop onto it); the work itself runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool
from starlette.applications import Starlette

from monitoring.config import get_alert_settings, get_orchestrator_settings
from monitoring.healing.actions import Action, Mode
from monitoring.orchestrator import cycle as orchestrator
from serving.orchestrator.executors import api_executors, relay_endpoints
from serving.state import AppState

log = logging.getLogger(__name__)


def arrival_context(app: Starlette) -> orchestrator.OrchestratorContext:
    """What detection, replica healing and their alerts need in this process: RelayCore's
    endpoints with their figures, its drain and restore, and the alert sinks."""
    state: AppState = app.state.automatrix
    relay = getattr(app.state, "relaycore", None)
    settings = get_orchestrator_settings()
    return orchestrator.OrchestratorContext(
        engine=state.engine(),
        settings=settings,
        endpoints=relay_endpoints(relay),
        executors=api_executors(state, relay, asyncio.get_running_loop(), settings),
        alerting=get_alert_settings(),
    )


async def react_on_arrival(
    app: Starlette, services: Sequence[str], now: datetime | None = None
) -> dict[str, Any]:
    """The anomalies that opened and the drains and restores done (HEALING_MODE), as JSON; their
    alerts are raised and delivered too."""
    context = arrival_context(app)
    return await run_in_threadpool(_react, context, list(services), now or datetime.now(UTC))


async def watch_replicas(app: Starlette) -> None:
    """Every HEALING_WATCH_SECONDS, while HEALING_MODE is auto, drains and restores replicas on
    this process's RelayCore evidence (its breakers, error rates and latencies move within
    seconds of a fault), so a drain need not wait for the next ingestion. Read on each tick, so
    a changed setting applies at once; a failed tick is logged and the watch goes on."""
    while True:
        settings = get_orchestrator_settings()
        interval = settings.healing_watch_seconds or 60.0  # off: look again for a change later
        await asyncio.sleep(interval)
        if not settings.healing_watch_seconds or settings.healing_mode is not Mode.AUTO:
            continue
        try:
            await heal_on_relay_evidence(app)
        except Exception as exc:  # the store or RelayCore being down must not end the watch
            log.warning("replica watch failed: %s", exc)


async def heal_on_relay_evidence(
    app: Starlette, now: datetime | None = None
) -> list[dict[str, Any]]:
    """One tick of the watch: the drains and restores done, as in `react_on_arrival`."""
    relay = getattr(app.state, "relaycore", None)
    services = sorted({e.service for e in relay.desired_endpoints() if e.service}) if relay else []
    if not services:
        return []
    context = arrival_context(app)
    done = await run_in_threadpool(
        orchestrator.react_on_arrival,
        context,
        services,
        now or datetime.now(UTC),
        "relaycore-watch",
        False,
    )
    return [_action(a) for a in done.actions]


def _action(a: Action) -> dict[str, Any]:
    return {"id": a.id, "kind": str(a.kind), "replica": a.replica, "state": str(a.state)}


def _react(
    context: orchestrator.OrchestratorContext, services: list[str], now: datetime
) -> dict[str, Any]:
    done = orchestrator.react_on_arrival(context, services, now, started_by="api-push")
    return {
        "new_anomalies": done.new_anomalies,
        "actions": [_action(a) for a in done.actions],
    }
