"""The fleet runner: plan, start and register the replicas, drive the load and the chaos through
RelayCore until the duration ends or a signal comes, then unregister and stop everything.

`start_fleet` is what `automatrix fleet` runs; `fleet_command` is the argv that a supervisor
(`automatrix up`) starts as one child process to run the demo fleet beside the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from serving.fleet import processes
from serving.fleet.chaos import ChaosConfig, ChaosSchedule, inject
from serving.fleet.fleet import Fleet
from serving.fleet.loadgen import LoadConfig, run_load
from serving.fleet.plan import (
    FleetFailed,
    ReplicaSpec,
    plan_fleet,
    prometheus_targets,
    require_loopback,
)
from serving.fleet.relay import RelayRegistry, api_client
from serving.fleet.scaler import FleetScaler, webhook_app

WATCH_S = 1.0
__all__ = ["FleetFailed", "FleetOptions", "fleet_command", "start_fleet"]
Say = Callable[[str], None]


@dataclass(frozen=True)
class FleetOptions:
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    services: int = 2
    replicas: int = 3
    rate: float = 20.0
    duration_s: float | None = None  # None: until stopped
    chaos: ChaosConfig | None = ChaosConfig()  # None: no chaos
    base_port: int | None = None  # None: free ports
    targets_file: Path | None = None  # Prometheus file_sd targets, rewritten on each change
    seed: int | None = None
    scale_port: int | None = None  # POST 127.0.0.1:PORT/scale: the scaling webhook's receiver


def fleet_command(
    api_url: str, *, chaos: bool = True, rate: float = 20.0, targets_file: Path | None = None
) -> list[str]:
    """The argv of `automatrix fleet` against the API at `api_url`, for a supervisor to start.
    The API key, if any, comes from API_KEY in the child's environment."""
    argv = [sys.executable, "-m", "serving.cli.commands", "fleet", "--api-url", api_url]
    argv += ["--rate", str(rate), "--chaos" if chaos else "--no-chaos"]
    return argv if targets_file is None else [*argv, "--targets-file", str(targets_file)]


def say(line: str) -> None:
    print(f"[fleet] {line}", flush=True)


def start_fleet(options: FleetOptions, out: Say = say) -> dict[str, Any]:
    """Runs the fleet to the end of its duration or a SIGINT/SIGTERM; returns the load summary."""
    require_loopback(options.api_url)
    count = options.services * options.replicas
    ports = (
        list(range(options.base_port, options.base_port + count))
        if options.base_port
        else processes.free_ports(count)
    )
    specs = plan_fleet(options.services, options.replicas, ports)
    with api_client(options.api_url, options.api_key) as client:
        fleet = Fleet(RelayRegistry(client), seed=options.seed, on_change=_targets(options, out))
        try:
            fleet.start(specs)
            for spec in specs:
                out(f"{spec.name} ({spec.service}, mean {spec.mean_ms:g} ms) at {spec.url}")
            return asyncio.run(_drive(fleet, options, out))
        finally:
            fleet.stop()
            out("stopped")


async def _drive(fleet: Fleet, options: FleetOptions, out: Say) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services = tuple(sorted({s.service for s in fleet.replicas()}))
    config = LoadConfig(rate=options.rate, duration_s=options.duration_s, services=services)
    headers = {"X-API-Key": options.api_key} if options.api_key else {}
    out(f"load: {config.rate:g} messages/s through {options.api_url}/api/v2/relaycore/message")
    async with httpx.AsyncClient(base_url=options.api_url, headers=headers, timeout=40.0) as client:
        watchers = [asyncio.create_task(_watch(fleet, stop, out))]
        if options.chaos is not None:
            schedule = ChaosSchedule(options.chaos, random.Random(options.seed), time.monotonic())
            out(f"chaos: one fault every {options.chaos.interval_s:g} s (--no-chaos: none)")
            watchers.append(asyncio.create_task(_chaos(fleet, schedule, stop, out)))
        if options.scale_port is not None:
            watchers.append(asyncio.create_task(_scale_webhook(fleet, options.scale_port, stop)))
            out(f"scaling webhook: POST http://127.0.0.1:{options.scale_port}/scale")
        report = await run_load(client, config, stop)
        stop.set()
        await asyncio.gather(*watchers)
    summary = report.summary()
    out(f"load done: {json.dumps(summary)}")
    return summary


async def _chaos(fleet: Fleet, schedule: ChaosSchedule, stop: asyncio.Event, out: Say) -> None:
    while not await _stopped(stop, WATCH_S):
        injection = schedule.draw(fleet.replicas(), time.monotonic())
        if injection is None:
            continue
        name = injection.replica.name
        try:
            response = await asyncio.to_thread(inject, injection)
            out(f"chaos: {json.dumps(injection.body)} into {name}: {response.status_code}")
        except httpx.HTTPError as exc:
            out(f"chaos: {name} unreachable: {type(exc).__name__}")


async def _watch(fleet: Fleet, stop: asyncio.Event, out: Say) -> None:
    told: set[str] = set()
    while not await _stopped(stop, WATCH_S):
        for spec in fleet.exited():
            if spec.name not in told:
                told.add(spec.name)
                out(f"{spec.name} exited; RelayCore's breaker and healing see it as down")


async def _scale_webhook(fleet: Fleet, port: int, stop: asyncio.Event) -> None:
    import uvicorn

    app = webhook_app(FleetScaler(fleet))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    # SIGINT and SIGTERM are the runner's (they set `stop`); uvicorn must not take them over.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _targets(options: FleetOptions, out: Say) -> Callable[[list[ReplicaSpec]], None] | None:
    path = options.targets_file
    if path is None:
        return None

    def write(specs: list[ReplicaSpec]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".tmp")
        partial.write_text(json.dumps(prometheus_targets(specs), indent=2))
        partial.replace(path)  # Prometheus reads file_sd files whole: never a half-written one

    out(f"Prometheus targets (file_sd) in {path}")
    return write
