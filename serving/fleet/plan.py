"""The fleet's plan, pure: which services, which replicas, on which ports, under which names.

A replica `checkout-1` of service `checkout` listens on `http://127.0.0.1:PORT`; RelayCore
forwards to its endpoint URL `http://127.0.0.1:PORT/work`, and its base URL (the endpoint URL
without its path) answers the fault contract at `/faults` and Prometheus at `/metrics`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HOST = "127.0.0.1"
WORK_PATH = "/work"
MAX_SERVICES = 8
MAX_REPLICAS = 10  # per service, for the plan and the scaler alike
# The demo's services and their mean service times (ms): distinct, so routing has work to do.
SERVICES: tuple[tuple[str, float], ...] = (
    ("checkout", 20.0),
    ("search", 35.0),
    ("catalog", 15.0),
    ("payments", 50.0),
)
NAME = re.compile(r"^(?P<service>.+)-(?P<index>\d+)$")


class FleetFailed(RuntimeError):
    """The fleet could not do what it was asked: a replica or the API failed it."""


@dataclass(frozen=True)
class ReplicaSpec:
    service: str
    name: str
    port: int
    mean_ms: float

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + WORK_PATH


def service_names(count: int) -> list[tuple[str, float]]:
    """The first `count` demo services with their means; beyond the named ones, service-N."""
    if not 1 <= count <= MAX_SERVICES:
        raise ValueError(f"services must be between 1 and {MAX_SERVICES}, not {count}")
    extra = [(f"service-{i}", 25.0) for i in range(len(SERVICES), count)]
    return [*SERVICES, *extra][:count]


def plan_fleet(services: int, replicas: int, ports: Sequence[int]) -> list[ReplicaSpec]:
    """services x replicas specs, taking ports in order (`ports` holds at least that many)."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas must be between 1 and {MAX_REPLICAS}, not {replicas}")
    chosen = service_names(services)
    if len(ports) < len(chosen) * replicas:
        raise ValueError(f"{len(chosen) * replicas} ports needed, {len(ports)} given")
    it = iter(ports)
    return [
        ReplicaSpec(service, replica_name(service, i), next(it), mean)
        for service, mean in chosen
        for i in range(replicas)
    ]


def replica_name(service: str, index: int) -> str:
    return f"{service}-{index}"


def next_index(names: Iterable[str], service: str) -> int:
    """The lowest index not taken by a replica of `service` among `names`."""
    taken = {int(m["index"]) for n in names if (m := NAME.match(n)) and m["service"] == service}
    return next(i for i in range(len(taken) + 1) if i not in taken)


def is_fleet_name(name: str, services: Iterable[str]) -> bool:
    """Whether an endpoint name is one the fleet would give a replica of one of `services`."""
    found = NAME.match(name)
    return found is not None and found["service"] in set(services)


def base_url(endpoint_url: str) -> str:
    """The replica base URL: the endpoint URL without its path, query or fragment."""
    parts = urlsplit(endpoint_url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def replica_argv(spec: ReplicaSpec, parent_pid: int, seed: int | None = None) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "serving.fleet.replica",
        "--service",
        spec.service,
        "--name",
        spec.name,
        "--port",
        str(spec.port),
        "--mean-ms",
        str(spec.mean_ms),
        "--parent-pid",
        str(parent_pid),
    ]
    return argv if seed is None else [*argv, "--seed", str(seed)]


def prometheus_targets(specs: Iterable[ReplicaSpec]) -> list[dict[str, Any]]:
    """Prometheus file_sd targets: one per replica, labelled with its service and its replica's
    endpoint name, so that what Prometheus stores names the replica as RelayCore does."""
    return [
        {
            "targets": [f"{HOST}:{s.port}"],
            # job and instance (which these override) for the default mapping, which reads the
            # service from job and the replica from instance; service and replica for readers.
            "labels": {
                "job": s.service,
                "instance": s.name,
                "service": s.service,
                "replica": s.name,
            },
        }
        for s in specs
    ]


def require_loopback(url: str) -> str:
    """`url` if it points at this machine; the fleet's traffic never leaves 127.0.0.1."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"{url!r} is not on 127.0.0.1: the demo fleet stays on this machine")
    return url
