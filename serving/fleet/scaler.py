"""The demo fleet's scaler: a `Scaler` (monitoring.healing.scaler) that starts and stops replica
processes and registers and unregisters them in RelayCore.

The count is the fleet's running replicas, never a setting. Scaling down removes the replicas
with the highest indexes first, each unregistered before it stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitoring.healing.scaler import ScaleResult
from serving.fleet.fleet import Fleet
from serving.fleet.plan import MAX_REPLICAS, FleetFailed

MIN_REPLICAS = 1


class FleetScaler:
    """Scales the services of one `Fleet`, between `MIN_REPLICAS` and `MAX_REPLICAS` each."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._lock = threading.Lock()  # one scale at a time, so two never race on one service

    def current(self, service: str) -> int:
        return len(self.fleet.replicas(service))

    def scale(self, service: str, replicas: int) -> ScaleResult:
        with self._lock:
            before = self.current(service)
            if before == 0:
                return ScaleResult(service, 0, 0, False, f"{service} is not a fleet service")
            wanted = min(max(replicas, MIN_REPLICAS), MAX_REPLICAS)
            try:
                self._reach(service, wanted)
            except FleetFailed as exc:
                after = self.current(service)
                return ScaleResult(service, before, after, False, str(exc))
            after = self.current(service)
            detail = f"{service}: {before} -> {after} replicas"
            if wanted != replicas:
                detail += f" (asked {replicas}, kept within {MIN_REPLICAS}..{MAX_REPLICAS})"
            return ScaleResult(service, before, after, True, detail)

    def _reach(self, service: str, wanted: int) -> None:
        while self.current(service) < wanted:
            self.fleet.add(service)
        while (found := self.fleet.replicas(service)) and len(found) > wanted:
            highest = max(found, key=lambda s: int(s.name.rsplit("-", 1)[1]))
            self.fleet.remove(highest.name)


def webhook_app(scaler: FleetScaler) -> Starlette:
    """`POST /scale` taking the scaling webhook's body (monitoring.healing.executors), so that the
    healing's existing webhook executor scales the demo fleet from another process: 200 with the
    result, 409 when the fleet could not, 422 for a body without `service` and
    `desired_replicas`."""

    async def scale(request: Request) -> Response:
        try:
            body = await request.json()
            service, desired = str(body["service"]), int(body["desired_replicas"])
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"detail": f"body: {type(exc).__name__}: {exc}"}, status_code=422)
        result = await asyncio.to_thread(scaler.scale, service, desired)
        return JSONResponse(dataclasses.asdict(result), status_code=200 if result.ok else 409)

    return Starlette(routes=[Route("/scale", scale, methods=["POST"])])
