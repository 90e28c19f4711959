"""Detection on arrival in the API process, for the push endpoint (POST /api/v2/metrics).

`react_on_arrival(app, services)` scores what just arrived for those services and their
replicas, then drains and restores replicas on their own evidence, as the ingestion flow's
`react_on_arrival` task does. The API is a long-lived process, so each series' warmed detector
is kept between pushes and a push costs only its new rows. It must be awaited on the app's event
loop (RelayCore's drain and restore hop onto it); the work itself runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool
from starlette.applications import Starlette

from monitoring.config import get_alert_settings, get_orchestrator_settings
from monitoring.orchestrator import cycle as orchestrator
from serving.orchestrator.executors import api_executors, relay_endpoints
from serving.state import AppState


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


def _react(
    context: orchestrator.OrchestratorContext, services: list[str], now: datetime
) -> dict[str, Any]:
    done = orchestrator.react_on_arrival(context, services, now, started_by="api-push")
    return {
        "new_anomalies": done.new_anomalies,
        "actions": [
            {"id": a.id, "kind": str(a.kind), "replica": a.replica, "state": str(a.state)}
            for a in done.actions
        ],
    }
