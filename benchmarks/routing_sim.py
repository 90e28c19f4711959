"""RelayCore routing policies side by side in a deterministic discrete-event simulation.

Every policy routes the same arrivals (same seed) over the same simulated endpoints, with the
real Router, breakers, queue and retry budget driven by a virtual clock. Endpoints have 4
workers each and lognormal service times (mean 10 ms, sigma 0.5); the router's concurrency
limit per endpoint is twice its workers, so some queueing happens at the endpoints, as it does
in practice. Latency is end to end: queueing in the router, retries and service.

    .venv/bin/python benchmarks/routing_sim.py [--messages N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from routing.policies import POLICY_NAMES
from routing.simulation import SimEndpoint, SimResult, lognormal, poisson_arrivals, simulate

MEAN_S = 0.010
WORKERS = 4
HIGH, MID, LOW = 9, 5, 0


@dataclass
class Scenario:
    name: str
    endpoints: list[SimEndpoint]
    arrivals: list[tuple[float, int]]
    focus: tuple[float, float] | None = None  # a window worth reporting on its own


def _endpoints(factors: list[float]) -> list[SimEndpoint]:
    return [
        SimEndpoint(chr(ord("a") + i), lognormal(MEAN_S * f), WORKERS)
        for i, f in enumerate(factors)
    ]


def _capacity(factors: list[float]) -> float:
    return sum(WORKERS / (MEAN_S * f) for f in factors)


def _steady(rng: random.Random, rate: float, messages: int) -> list[tuple[float, int]]:
    return poisson_arrivals(rng, lambda t: rate, messages / rate)


def scenarios(messages: int, seed: int) -> list[Scenario]:
    rng = random.Random(seed)
    equal = [1.0, 1.0, 1.0, 1.0]
    unequal = [1.0, 1.0, 2.0, 4.0]
    out = [
        Scenario("equal", _endpoints(equal), _steady(rng, 0.7 * _capacity(equal), messages)),
        Scenario(
            "unequal 1x,1x,2x,4x",
            _endpoints(unequal),
            _steady(rng, 0.5 * _capacity(unequal), messages),
        ),
    ]
    rate = 0.5 * _capacity(equal)
    duration = messages / rate
    slow = _endpoints(equal)
    start, end = 0.3 * duration, 0.6 * duration
    slow[3].slowdown = lambda t: 20.0 if start <= t < end else 1.0
    out.append(Scenario("d slows 20x, recovers", slow, _steady(rng, rate, messages), (start, end)))
    failing = _endpoints(equal)
    failing[3].fail_status = 503
    out.append(Scenario("d answers 503 at once", failing, _steady(rng, rate, messages)))
    out.append(_burst(rng, messages))
    return out


def _burst(rng: random.Random, messages: int) -> Scenario:
    """50% load, then a burst at 150% of capacity for a third of the time, then 50% again."""
    capacity = _capacity([1.0] * 4)
    duration = messages / capacity  # mean load 0.5/3 + 1.5/3 + 0.5/3 = 5/6 of capacity
    mix = [(HIGH, 0.1), (MID, 0.3), (LOW, 0.6)]

    def rate(t: float) -> float:
        return (1.5 if duration / 3 <= t < 2 * duration / 3 else 0.5) * capacity

    return Scenario(
        "burst 150%, mixed priorities",
        _endpoints([1.0] * 4),
        poisson_arrivals(rng, rate, duration, mix),
    )


def unloaded_p99_ms(seed: int) -> float:
    """The reference for the burst target: the same endpoints at 10% load."""
    rng = random.Random(seed + 99)
    arrivals = _steady(rng, 0.1 * _capacity([1.0] * 4), 5000)
    return simulate(_endpoints([1.0] * 4), arrivals, "least_request", seed=seed).percentile_ms(99)


def _row(policy: str, r: SimResult) -> str:
    share = " ".join(f"{n}:{s:5.1%}" for n, s in r.share().items())
    return (
        f"  {policy:<14}{r.percentile_ms(50):8.1f}{r.percentile_ms(99):9.1f}"
        f"{r.percentile_ms(99.9):10.1f}{r.success_rate():10.3%}   {share}"
    )


def _ratios(results: dict[str, SimResult]) -> str:
    a, rr, lr = results["adaptive"], results["round_robin"], results["least_request"]

    def ratio(x: SimResult, y: SimResult, q: float) -> float:
        return x.percentile_ms(q) / y.percentile_ms(q)

    return (
        f"  adaptive/round_robin  p99 {ratio(a, rr, 99):.2f}  p99.9 {ratio(a, rr, 99.9):.2f}   "
        f"adaptive/least_request  p99 {ratio(a, lr, 99):.2f}  p99.9 {ratio(a, lr, 99.9):.2f}"
    )


Check = Callable[[dict[str, SimResult]], list[tuple[str, bool]]]


def _checks(name: str, results: dict[str, SimResult], unloaded: float) -> list[tuple[str, bool]]:
    a, rr, lr = results["adaptive"], results["round_robin"], results["least_request"]
    p = SimResult.percentile_ms
    if name.startswith(("unequal", "d slows")):
        return [
            ("p99 <= 0.5 x round_robin", p(a, 99) <= 0.5 * p(rr, 99)),
            ("p99 <= 0.8 x least_request", p(a, 99) <= 0.8 * p(lr, 99)),
            ("p99.9 <= 1/3 x round_robin", p(a, 99.9) <= p(rr, 99.9) / 3),
        ]
    if name.startswith("d answers"):
        return [("success >= 99.9%", a.success_rate() >= 0.999)]
    if name == "equal":
        return [("p99 <= 1.1 x least_request", p(a, 99) <= 1.1 * p(lr, 99))]
    low = a.statuses(LOW)
    return [
        (
            f"high-priority p99 <= 2 x unloaded p99 ({unloaded:.1f} ms)",
            p(a, 99, HIGH) <= 2 * unloaded,
        ),
        ("every low-priority message served or 429", set(low) <= {200, 429}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    unloaded = unloaded_p99_ms(args.seed)
    print(f"unloaded p99 (10% load, equal endpoints): {unloaded:.1f} ms")
    verdicts = []
    for scenario in scenarios(args.messages, args.seed):
        print(f"\n{scenario.name}  ({len(scenario.arrivals)} messages)")
        print(f"  {'policy':<14}{'p50 ms':>8}{'p99 ms':>9}{'p99.9 ms':>10}{'success':>10}   share")
        results = {}
        for policy in POLICY_NAMES:
            results[policy] = simulate(
                scenario.endpoints, scenario.arrivals, policy, seed=args.seed
            )
            print(_row(policy, results[policy]))
        print(_ratios(results))
        if scenario.focus is not None:
            _print_focus(scenario.focus, results)
        if scenario.name.startswith("burst"):
            _print_burst(results)
        for label, ok in _checks(scenario.name, results, unloaded):
            verdicts.append((scenario.name, label, ok))
        if scenario.focus is not None:
            windowed = {p: r.arrived_between(*scenario.focus) for p, r in results.items()}
            for label, ok in _checks(scenario.name, windowed, unloaded):
                verdicts.append((scenario.name + " (while d is slow)", label, ok))
    print("\ntargets for adaptive")
    for scenario_name, label, ok in verdicts:
        print(f"  [{'met' if ok else 'MISSED':>6}] {scenario_name}: {label}")
    print(f"\n{time.perf_counter() - started:.1f} s")


def _print_focus(focus: tuple[float, float], results: dict[str, SimResult]) -> None:
    print(f"  only messages that arrived while d was slow ({focus[0]:.1f}-{focus[1]:.1f} s):")
    windowed = {policy: r.arrived_between(*focus) for policy, r in results.items()}
    for policy, r in windowed.items():
        print(_row(policy, r))
    print(_ratios(windowed))


def _print_burst(results: dict[str, SimResult]) -> None:
    for policy, r in results.items():
        parts = []
        for level in (HIGH, MID, LOW):
            counts = dict(sorted(r.statuses(level).items()))
            parts.append(f"p{level}: p99 {r.percentile_ms(99, level):6.1f} ms {counts}")
        print(f"  {policy:<14}" + "  |  ".join(parts))


if __name__ == "__main__":
    main()
