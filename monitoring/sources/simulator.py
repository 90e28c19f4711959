"""A simulated cluster: daily and weekly cycles, noise, correlated metrics, injected incidents.

Each (service, day) is generated from its own seed, so any window is reproducible: ingesting
the same window twice, or a window that overlaps a previous one, gives the same samples.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from monitoring.samples import Sample

DEFAULT_SERVICES: tuple[str, ...] = ("api-gateway", "auth", "checkout", "search", "inventory")
INCIDENT_KINDS: tuple[str, ...] = ("memory_leak", "latency_spike", "error_burst", "traffic_surge")
STEP = timedelta(minutes=1)
DAY_STEPS = 24 * 60


@dataclass(frozen=True, slots=True)
class SimulatedIncident:
    service: str
    kind: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class SimulatedWindow:
    samples: list[Sample]
    incidents: list[SimulatedIncident]


def simulate(
    start: datetime,
    end: datetime,
    services: tuple[str, ...] | list[str] = DEFAULT_SERVICES,
    incidents_per_day: float = 1.0,
) -> SimulatedWindow:
    """One-minute samples for every service in [start, end), with the incidents that touch it."""
    start, end = _minute_floor(start), _minute_floor(end)
    samples: list[Sample] = []
    incidents: list[SimulatedIncident] = []
    for service in services:
        for day in _days(start, end):
            day_samples, day_incidents = _service_day(service, day, incidents_per_day)
            samples.extend(s for s in day_samples if start <= s.timestamp < end)
            incidents.extend(i for i in day_incidents if i.start < end and i.end > start)
    return SimulatedWindow(samples=samples, incidents=incidents)


def _minute_floor(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(second=0, microsecond=0)


def _days(start: datetime, end: datetime) -> list[datetime]:
    day = start.replace(hour=0, minute=0)
    days = []
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def _seed(service: str, day: datetime) -> int:
    digest = hashlib.sha256(f"{service}|{day.date().isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _profile(service: str) -> dict[str, float]:
    """Stable per-service character: size, baseline latency, memory footprint."""
    rng = np.random.default_rng(_seed(service, datetime(2000, 1, 1, tzinfo=UTC)))
    return {
        "traffic": float(rng.uniform(600, 3000)),
        "latency": float(rng.uniform(40, 120)),
        "memory": float(rng.uniform(35, 60)),
        "cpu_per_request": float(rng.uniform(0.012, 0.025)),
    }


def _service_day(
    service: str, day: datetime, incidents_per_day: float
) -> tuple[list[Sample], list[SimulatedIncident]]:
    rng = np.random.default_rng(_seed(service, day))
    profile = _profile(service)
    minutes = np.arange(DAY_STEPS)
    load = _load_shape(minutes, day) * profile["traffic"]
    requests = load * rng.lognormal(0.0, 0.05, DAY_STEPS)
    memory = (
        profile["memory"]
        + 3 * np.sin(2 * np.pi * minutes / DAY_STEPS)
        + rng.normal(0, 0.8, DAY_STEPS)
    )
    extra_latency = np.zeros(DAY_STEPS)
    extra_errors = np.zeros(DAY_STEPS)
    incidents = _draw_incidents(service, day, rng, incidents_per_day)
    for incident in incidents:
        first = int((incident.start - day) / STEP)
        last = int((incident.end - day) / STEP)
        _apply(
            incident.kind, slice(first, last), requests, memory, extra_latency, extra_errors, rng
        )
    cpu = np.clip(requests * profile["cpu_per_request"] + rng.normal(0, 2, DAY_STEPS), 1, 100)
    utilisation = np.clip(cpu / 100, 0, 0.97)
    latency = profile["latency"] / (1 - utilisation) * rng.lognormal(0, 0.08, DAY_STEPS)
    latency += extra_latency + np.maximum(memory - 85, 0) * 25
    errors = 0.2 + 8 * np.maximum(utilisation - 0.85, 0) + extra_errors + np.maximum(memory - 92, 0)
    errors = np.clip(errors * rng.lognormal(0, 0.2, DAY_STEPS), 0, 100)
    columns = (cpu, np.clip(memory, 1, 100), latency, errors, np.maximum(requests, 0))
    return _to_samples(service, day, columns), incidents


def _load_shape(minutes: np.ndarray, day: datetime) -> np.ndarray:
    hour = minutes / 60
    daily = 0.55 + 0.45 * np.sin(2 * np.pi * (hour - 9) / 24) ** 2 * (hour > 6)
    weekend = 0.65 if day.weekday() >= 5 else 1.0
    return daily * weekend


def _draw_incidents(
    service: str, day: datetime, rng: np.random.Generator, per_day: float
) -> list[SimulatedIncident]:
    count = int(rng.poisson(per_day))
    incidents = []
    for _ in range(count):
        kind = str(rng.choice(INCIDENT_KINDS))
        length = int(rng.integers(240, 480)) if kind == "memory_leak" else int(rng.integers(10, 45))
        first = int(rng.integers(0, DAY_STEPS - length))
        start = day + first * STEP
        incidents.append(SimulatedIncident(service, kind, start, start + length * STEP))
    return incidents


def _apply(
    kind: str,
    span: slice,
    requests: np.ndarray,
    memory: np.ndarray,
    extra_latency: np.ndarray,
    extra_errors: np.ndarray,
    rng: np.random.Generator,
) -> None:
    length = span.stop - span.start
    ramp = np.linspace(0, 1, length)
    if kind == "memory_leak":
        memory[span] += ramp * (100 - memory[span].mean())
    elif kind == "latency_spike":
        extra_latency[span] += rng.uniform(300, 900) * np.sin(np.pi * ramp) ** 0.3
    elif kind == "error_burst":
        extra_errors[span] += rng.uniform(5, 25)
    elif kind == "traffic_surge":
        requests[span] *= 1 + rng.uniform(1.5, 3.0) * np.sin(np.pi * ramp) ** 0.5


def _to_samples(service: str, day: datetime, columns: tuple[np.ndarray, ...]) -> list[Sample]:
    cpu, memory, latency, errors, requests = (np.round(column, 3).tolist() for column in columns)
    return [
        Sample(service, day + i * STEP, cpu[i], memory[i], latency[i], errors[i], requests[i])
        for i in range(DAY_STEPS)
        if all(math.isfinite(v) for v in (cpu[i], memory[i], latency[i], errors[i], requests[i]))
    ]
