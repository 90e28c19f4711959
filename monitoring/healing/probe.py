"""Probing a drained replica: it gets no traffic, so its own metrics say nothing about it.

A `Probe` sends a few requests straight to a replica's endpoint URL and reports what came back.
The healing policy (`monitoring.healing.policy`) judges the report against its service's normal
latency; the orchestrator injects the probe, so the policy is tested without sockets.

`http_probe` POSTs a small JSON body to the endpoint URL, as RelayCore does when it forwards a
message (a GET would miss a fault on the route that serves the traffic), with a short timeout,
and only to hosts it is told it may reach (127.0.0.1 by default).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

# A replica failing half its requests passes 8 probes in a row once in 256 (3 let one in 8 back).
PROBE_COUNT = 8
PROBE_TIMEOUT_S = 2.0
PROBE_BODY = {"probe": "automatrix"}
LOCAL_HOSTS: tuple[str, ...] = ("127.0.0.1",)


@dataclass(frozen=True)
class ProbeReport:
    """The answers to one probe: a status (None: no answer) and a latency per request."""

    url: str
    statuses: tuple[int | None, ...] = ()
    latencies_ms: tuple[float, ...] = ()
    problem: str | None = None  # why it could not probe, or the first transport error
    errors: tuple[str, ...] = field(default=(), compare=False)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    def describe(self) -> dict[str, object]:
        """JSON-ready, for the action's params."""
        median = self.median_ms
        return {
            "url": self.url,
            "statuses": list(self.statuses),
            "latencies_ms": [round(x, 1) for x in self.latencies_ms],
            "median_ms": None if median is None else round(median, 1),
            "problem": self.problem,
        }


Probe = Callable[[str], ProbeReport]


def no_probe(url: str) -> ProbeReport:
    """A probe that never reaches anything: nothing drained is ever restored automatically."""
    return ProbeReport(url, problem="no probe configured")


def refusal(url: str, hosts: Sequence[str]) -> str | None:
    """Why `url` may not be probed, or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"not an http(s) URL: {url!r}"
    if parts.hostname not in hosts:
        return f"host {parts.hostname!r} is not one the probe may reach ({', '.join(hosts)})"
    return None


def http_probe(
    count: int = PROBE_COUNT,
    timeout_s: float = PROBE_TIMEOUT_S,
    hosts: Sequence[str] = LOCAL_HOSTS,
    clock: Callable[[], float] = time.perf_counter,
) -> Probe:
    """Up to `count` sequential POSTs to the endpoint URL; a timeout or refused connection is a
    None status, so a replica that does not answer is never judged healthy. It stops at the first
    failed answer (5xx or none), which already keeps the replica drained: a still faulty replica
    costs one or two requests, a healthy one `count`."""

    def probe(url: str) -> ProbeReport:
        refused = refusal(url, hosts)
        if refused is not None:
            return ProbeReport(url, problem=refused)
        statuses: list[int | None] = []
        latencies: list[float] = []
        errors: list[str] = []
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            for _ in range(count):
                started = clock()
                try:
                    statuses.append(client.post(url, json=PROBE_BODY).status_code)
                except httpx.HTTPError as exc:
                    statuses.append(None)
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                latencies.append((clock() - started) * 1000.0)
                if statuses[-1] is None or statuses[-1] >= 500:
                    break
        problem = errors[0] if errors else None
        return ProbeReport(url, tuple(statuses), tuple(latencies), problem, tuple(errors))

    return probe
