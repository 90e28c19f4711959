"""One demo replica: a small HTTP service, one process, on 127.0.0.1.

- `POST /work` takes any JSON body (what RelayCore forwards) and answers after a service time
  drawn around the service's mean, multiplied by an active latency fault; an errors fault
  answers 503 to its share of requests at once.
- `POST /faults`, `GET /faults`, `DELETE /faults`: the fault contract (faults.py).
- `GET /metrics`: prometheus-client's exposition: `http_server_request_duration_seconds`
  (OpenTelemetry HTTP names and buckets), `http_server_active_requests`, `target_info` naming the
  service and replica, and the default process, platform and GC collectors.
- `GET /health`: liveness. Neither it nor /metrics is timed, so probes and scrapes do not dilute
  the service's latency.

Run as `python -m serving.fleet.replica --service S --name S-0 --port P --mean-ms M`. It exits
when its parent dies (`--parent-pid`), so a killed fleet leaves no orphan.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.fleet.faults import FaultBook, FaultRequest

# OpenTelemetry's advised buckets for http.server.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
MAX_SERVICE_S = 30.0  # a latency fault of x100 on a slow draw still ends
PARENT_CHECK_S = 1.0
Handler = Callable[[Request], Awaitable[Response]]


class Metrics:
    """The replica's instruments, on `registry` (the default one, with the process collectors)."""

    def __init__(self, service: str, name: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "http_server_active_requests",
            "Number of active HTTP server requests.",
            ["http_request_method"],
            registry=registry,
        )
        target = Info("target", "The service and replica this process is.", registry=registry)
        target.info({"service_name": service, "service_instance_id": name})

    def timed(self, route: str, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            method = request.method
            started = time.perf_counter()
            self.active.labels(method).inc()
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            finally:
                self.active.labels(method).dec()
                self.duration.labels(method, route, str(status)).observe(
                    time.perf_counter() - started
                )

        return run


def service_time(mean_s: float, rng: random.Random) -> float:
    """A gamma draw (shape 4) around the mean, kept within [mean/5, 5 x mean]."""
    drawn = rng.gammavariate(4.0, mean_s / 4.0)
    return min(max(drawn, mean_s / 5.0), mean_s * 5.0)


def create_replica_app(
    service: str,
    name: str,
    mean_ms: float,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    registry: CollectorRegistry = REGISTRY,
    parent_pid: int | None = None,
) -> Starlette:
    rng = rng or random.Random()
    faults = FaultBook(clock)
    metrics = Metrics(service, name, registry)
    identity = {"service": service, "replica": name}

    async def work(request: Request) -> Response:
        body = await request.body()
        if rng.random() < faults.error_rate():
            return JSONResponse({**identity, "error": "injected fault"}, status_code=503)
        seconds = min(service_time(mean_ms / 1000.0, rng) * faults.latency_factor(), MAX_SERVICE_S)
        await asyncio.sleep(seconds)
        payload = _json_or_none(body)
        return JSONResponse({**identity, "service_time_ms": seconds * 1000.0, "payload": payload})

    async def add_fault(request: Request) -> Response:
        try:
            fault = FaultRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _unprocessable(exc)
        faults.add(fault)
        return JSONResponse({**identity, "faults": faults.describe()}, status_code=201)

    async def list_faults(_request: Request) -> Response:
        return JSONResponse({**identity, "faults": faults.describe()})

    async def clear_faults(_request: Request) -> Response:
        faults.clear()
        return JSONResponse({**identity, "faults": []})

    async def expose(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def health(_request: Request) -> Response:
        return JSONResponse({**identity, "status": "ok"})

    # Only /work is the service's traffic: the fault contract is the operator's (or the chaos
    # schedule's) control, and counting it would add requests to the replica it is aimed at.
    routes = [
        Route("/work", metrics.timed("/work", work), methods=["POST"]),
        Route("/faults", add_fault, methods=["POST"]),
        Route("/faults", list_faults, methods=["GET"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/metrics", expose, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=_lifespan(parent_pid))


def _lifespan(parent_pid: int | None) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def run(_app: Starlette) -> AsyncIterator[None]:
        watch = None if parent_pid is None else asyncio.create_task(_watch_parent(parent_pid))
        yield
        if watch is not None:
            watch.cancel()

    return run


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _unprocessable(exc: ValidationError) -> Response:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid fault"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return JSONResponse({"detail": f"{where}: {first['msg']}", "errors": errors}, status_code=422)


async def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_S)
    os._exit(0)  # the fleet that started us is gone: leave no orphan


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="One demo replica on 127.0.0.1.")
    parser.add_argument("--service", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mean-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    app = create_replica_app(
        args.service,
        args.name,
        args.mean_ms,
        rng=random.Random(args.seed),
        parent_pid=args.parent_pid,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
