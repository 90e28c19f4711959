"""What perfect knowledge of the endpoints would buy: the reference beside the routing targets.

The oracle sees what no router can. It knows when each worker of each endpoint frees up, and the
mean service time of a call starting at any instant, a slowdown included from its first
instant. Every message goes to the endpoint with the earliest expected completion, and then
takes the service time it really draws there. It does not know a message's own draw in advance,
which would beat the service-time distribution itself.

Earliest completion with exact backlogs is how the best join-the-shortest-queue schedulers are
judged. A target that this oracle misses on a scenario is out of any policy's reach there.

Used by routing_sim.py (the same arrivals and service-time distributions as the policies) and
routing_real.py (the backends' configured delays plus RelayCore's own latency at rest).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# (rng, start of service in s) -> seconds
Draw = Callable[[random.Random, float], float]


@dataclass(frozen=True)
class OracleEndpoint:
    workers: int
    mean_s: Callable[[float], float]  # expected service time of a call starting at t
    draw_s: Draw  # the service time such a call really takes


def earliest_completion(
    endpoints: Sequence[OracleEndpoint], arrivals: Sequence[float], seed: int = 0
) -> list[float]:
    """Each message's latency in seconds, in arrival order, under the oracle's choices."""
    rng = random.Random(seed)
    free_at = [[0.0] * e.workers for e in endpoints]
    latencies = []
    for t in arrivals:
        best: tuple[float, int, int, float] | None = None
        for i, e in enumerate(endpoints):
            worker = min(range(e.workers), key=free_at[i].__getitem__)
            start = max(free_at[i][worker], t)
            expected = start + e.mean_s(start)
            if best is None or expected < best[0]:
                best = (expected, i, worker, start)
        assert best is not None, "the oracle needs at least one endpoint"
        _, i, worker, start = best
        done = start + endpoints[i].draw_s(rng, start)
        free_at[i][worker] = done
        latencies.append(done - t)
    return latencies


def sampled_mean(draw: Draw, samples: int = 4000, seed: int = 0) -> float:
    """The mean of a service-time distribution known only through its sampler."""
    rng = random.Random(seed)
    return sum(draw(rng, 0.0) for _ in range(samples)) / samples
