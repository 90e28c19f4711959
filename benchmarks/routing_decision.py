"""Cost of one routing decision per policy (target: under 20 microseconds), median of runs.

Endpoints carry live statistics and learnt latencies, as in service, so the learning policies
do their full work. ``random.choice`` is printed beside them as the floor of any decision.
"under load" is a decision when half the endpoints are at their concurrency limit: the policy
first says which free ones are worth sending to (adaptive may hold a far slower one back), then
chooses among them.

    .venv/bin/python benchmarks/routing_decision.py
"""

from __future__ import annotations

import random
import statistics
import timeit
from collections.abc import Callable

from routing.endpoints import Endpoint, EndpointState, EndpointStats
from routing.policies import POLICY_NAMES, Policy, make_policy

RUNS = 7
DECISIONS = 20_000


def _pool(size: int, rng: random.Random) -> list[EndpointState]:
    pool = []
    for i in range(size):
        state = EndpointState(Endpoint(f"e{i}", f"http://127.0.0.1:{9000 + i}/"), EndpointStats())
        state.stats.in_flight = rng.randrange(8)
        pool.append(state)
    return pool


def _decider(choose: Callable[..., object], *args: object) -> Callable[[], object]:
    return lambda: choose(*args)


def _under_load(policy: Policy, pool: list[EndpointState]) -> EndpointState | None:
    half = len(pool) // 2
    free, busy = pool[half:], pool[:half]
    viable, _ = policy.viable(free, busy, 200.0)
    return policy.choose(viable, 200.0) if viable else None


def _median_us(decide: Callable[[], object]) -> float:
    runs = timeit.repeat(decide, number=DECISIONS, repeat=RUNS)
    return statistics.median(runs) / DECISIONS * 1e6


def main() -> None:
    rng = random.Random(1)
    print(f"median of {RUNS} runs of {DECISIONS} decisions, microseconds per decision")
    print(f"{'policy':<28}{'4 endpoints':>12}{'16 endpoints':>14}")
    rows: dict[str, list[float]] = {}
    for size in (4, 16):
        pool = _pool(size, rng)
        rows.setdefault("random.choice", []).append(_median_us(_decider(rng.choice, pool)))
        for name in POLICY_NAMES:
            policy = make_policy(name, random.Random(2))
            for t in range(200):  # learnt latencies, as after a few seconds of traffic
                for s in pool:
                    policy.observe(s.name, rng.lognormvariate(-4.6, 0.5), rng.random() < 0.01, t)
            rows.setdefault(name, []).append(_median_us(_decider(policy.choose, pool, 200.0)))
            loaded = f"{name} under load"
            rows.setdefault(loaded, []).append(_median_us(_decider(_under_load, policy, pool)))
    for name, figures in rows.items():
        verdict = "" if name == "random.choice" else ("  ok" if max(figures) < 20 else "  SLOW")
        print(f"{name:<28}{figures[0]:12.2f}{figures[1]:14.2f}{verdict}")


if __name__ == "__main__":
    main()
