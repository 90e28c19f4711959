"""Deterministic discrete-event simulation of RelayCore in front of simulated endpoints.

The real ``Router`` runs unchanged on an asyncio loop whose clock is virtual: when nothing is
ready, the loop jumps to the next timer instead of sleeping. Endpoints are modelled as servers
with a number of workers (a FIFO queue in front of them) and a service-time distribution, so
thousands of messages take seconds of CPU and the same seed gives the same figures.

Used by ``benchmarks/routing_sim.py`` and, with service times replayed from what the endpoints
really did (``endpoints_from_observations``), by the tuning of the adaptive policy.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.endpoints import Endpoint
from routing.errors import RoutingError
from routing.policies import AdaptiveParams
from routing.record import Observation
from routing.router import Router, RouterConfig, TransportResponse
from routing.windows import nearest_rank

# A service-time sampler: (rng, now) -> seconds, before any slowdown factor.
Sampler = Callable[[random.Random, float], float]


class _VirtualSelector:
    """Wraps the loop's selector: a wait for ``timeout`` advances virtual time instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("simulation deadlocked: nothing scheduled and nothing ready")
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        inner: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _VirtualSelector(inner, self)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += max(seconds, 0.0)


def lognormal(mean_s: float, sigma: float = 0.5) -> Sampler:
    """Service times with a realistic right tail; ``mean_s`` is the true mean."""
    mu = math.log(mean_s) - sigma * sigma / 2.0
    return lambda rng, now: rng.lognormvariate(mu, sigma)


def empirical(samples: Sequence[float]) -> Sampler:
    """Replays observed latencies, drawn at random."""
    pool = list(samples)
    return lambda rng, now: pool[int(rng.random() * len(pool))]


@dataclass
class SimEndpoint:
    name: str
    service: Sampler
    workers: int = 4
    slowdown: Callable[[float], float] = lambda now: 1.0  # service-time multiplier over time
    fail_status: int | None = None  # answer this status at once instead of serving
    fail_latency_s: float = 0.0005


def endpoints_from_observations(
    observations: Iterable[Observation], workers: int = 4
) -> list[SimEndpoint]:
    """Simulated endpoints whose service times replay what each real endpoint was seen doing."""
    by_endpoint: dict[str, list[float]] = {}
    for o in observations:
        if not o.failed:
            by_endpoint.setdefault(o.endpoint, []).append(o.latency_s)
    return [SimEndpoint(n, empirical(s), workers) for n, s in by_endpoint.items()]


def poisson_arrivals(
    rng: random.Random,
    rate: Callable[[float], float],
    duration_s: float,
    priorities: Sequence[tuple[int, float]] = ((5, 1.0),),
) -> list[tuple[float, int]]:
    """(time, priority) pairs; ``rate(t)`` per second may vary, priorities are (level, weight)."""
    levels = [p for p, _ in priorities]
    weights = [w for _, w in priorities]
    peak = max(rate(duration_s * i / 1000) for i in range(1001))
    out: list[tuple[float, int]] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)  # thinning: draw at the peak rate, keep with rate(t)/peak
        if t >= duration_s:
            return out
        if rng.random() * peak <= rate(t):
            out.append((t, rng.choices(levels, weights)[0]))


@dataclass(slots=True)
class SimOutcome:
    arrival: float
    priority: int
    latency_s: float  # until the answer, success or not
    status: int  # the endpoint's status, or the HTTP status of the routing error
    endpoint: str | None


@dataclass
class SimResult:
    outcomes: list[SimOutcome]
    calls: Counter[str] = field(default_factory=Counter)

    def latencies(self, priority: int | None = None) -> list[float]:
        return sorted(
            o.latency_s
            for o in self.outcomes
            if o.status < 400 and (priority is None or o.priority == priority)
        )

    def percentile_ms(self, q: float, priority: int | None = None) -> float:
        values = self.latencies(priority)
        return values[nearest_rank(len(values), q)] * 1000.0 if values else math.nan

    def success_rate(self) -> float:
        ok = sum(1 for o in self.outcomes if o.status < 400)
        return ok / len(self.outcomes) if self.outcomes else math.nan

    def share(self) -> dict[str, float]:
        total = sum(self.calls.values()) or 1
        return {name: n / total for name, n in sorted(self.calls.items())}

    def arrived_between(self, start: float, end: float) -> SimResult:
        """Only the messages that arrived in [start, end), e.g. while an endpoint was slow."""
        return SimResult([o for o in self.outcomes if start <= o.arrival < end])

    def statuses(self, priority: int | None = None) -> Counter[int]:
        return Counter(o.status for o in self.outcomes if priority in (None, o.priority))


class _Server:
    def __init__(self, spec: SimEndpoint, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.workers = asyncio.Semaphore(spec.workers)

    async def handle(self, loop: asyncio.AbstractEventLoop) -> TransportResponse:
        spec = self.spec
        if spec.fail_status is not None:
            await asyncio.sleep(spec.fail_latency_s)
            return TransportResponse(spec.fail_status)
        async with self.workers:
            now = loop.time()
            await asyncio.sleep(spec.service(self.rng, now) * spec.slowdown(now))
        return TransportResponse(200)


def simulate(
    endpoints: Sequence[SimEndpoint],
    arrivals: Sequence[tuple[float, int]],
    policy: str,
    *,
    seed: int = 0,
    config: RouterConfig | None = None,
    params: AdaptiveParams | None = None,
    max_concurrency: int | None = None,
) -> SimResult:
    """Route ``arrivals`` through a real Router with ``policy`` over simulated endpoints."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(
            _run(endpoints, arrivals, policy, seed, config, params, max_concurrency)
        )
    finally:
        loop.close()


async def _run(
    endpoints: Sequence[SimEndpoint],
    arrivals: Sequence[tuple[float, int]],
    policy: str,
    seed: int,
    config: RouterConfig | None,
    params: AdaptiveParams | None,
    max_concurrency: int | None,
) -> SimResult:
    loop = asyncio.get_running_loop()
    servers = {e.name: _Server(e, random.Random(seed * 1000 + i)) for i, e in enumerate(endpoints)}
    result = SimResult([])

    async def transport(endpoint: Endpoint, payload: Any, timeout: float) -> TransportResponse:
        result.calls[endpoint.name] += 1
        return await servers[endpoint.name].handle(loop)

    router = Router(
        transport,
        policy=policy,
        config=config,
        clock=loop.time,
        rng=random.Random(seed),
        adaptive_params=params,
    )
    for e in endpoints:
        router.register(
            e.name, f"http://sim.invalid/{e.name}", max_concurrency=max_concurrency or 2 * e.workers
        )
    tasks = []
    for at, priority in arrivals:
        await asyncio.sleep(at - loop.time())
        tasks.append(loop.create_task(_send(router, priority, result)))
    await asyncio.gather(*tasks)
    return result


async def _send(router: Router, priority: int, result: SimResult) -> None:
    start = asyncio.get_running_loop().time()
    try:
        answer = await router.send(None, priority=priority)
        status, endpoint = answer.status, answer.endpoint
    except RoutingError as exc:
        status, endpoint = exc.http_status, None
    latency = asyncio.get_running_loop().time() - start
    result.outcomes.append(SimOutcome(start, priority, latency, status, endpoint))
