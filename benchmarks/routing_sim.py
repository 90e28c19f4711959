"""RelayCore routing policies side by side in a deterministic discrete-event simulation.

Every policy routes the same arrivals (same seed) over the same simulated endpoints, with the
real Router, breakers, queue and retry budget driven by a virtual clock. Endpoints have 4
workers each and lognormal service times (mean 10 ms, sigma 0.5); the router's concurrency
limit per endpoint is twice its workers, so some queueing happens at the endpoints, as it does
in practice. Latency is end to end: queueing in the router, retries and service.

The baselines also run without a per-endpoint limit (marked "*"), as Envoy's and Linkerd's
balancers do: they never skip an endpoint for being busy, so under the limit round robin is
kinder to a slow endpoint than the real policy is. The targets are reported against both.
Each seed draws its own arrivals and service times; the targets are the medians over seeds.

Beside the policies, the clairvoyant oracle of routing_oracle.py routes the same arrivals over
the same service-time distributions, knowing every backlog exactly: each target's figure is
shown with what the oracle reaches, the best any policy could hope for there.

    .venv/bin/python benchmarks/routing_sim.py [--messages N] [--seeds 1 2 3 4 5]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass

from routing_oracle import OracleEndpoint, earliest_completion, sampled_mean

from routing.policies import POLICY_NAMES
from routing.simulation import (
    SimEndpoint,
    SimOutcome,
    SimResult,
    lognormal,
    poisson_arrivals,
    simulate,
)

MEAN_S = 0.010
WORKERS = 4
HIGH, MID, LOW = 9, 5, 0
# Envoy's and Linkerd's balancers hold no per-endpoint concurrency limit: round robin and
# least request (power of two choices) pick among every healthy endpoint, however busy. The
# baselines run both ways: under RelayCore's limit, and as those proxies do (suffix "*").
BASELINES = ("round_robin", "least_request", "peak_ewma")
UNLIMITED = "*"
NO_LIMIT = 1_000_000


@dataclass
class Scenario:
    name: str
    endpoints: list[SimEndpoint]
    arrivals: list[tuple[float, int]]
    focus: tuple[float, float] | None = None  # a window worth reporting on its own
    with_oracle: bool = False  # the speed targets' scenarios: all endpoints answer


ORACLE = "oracle"


def oracle_result(scenario: Scenario, seed: int) -> SimResult:
    """The clairvoyant oracle on the scenario's arrivals (see routing_oracle.py)."""

    def spec(e: SimEndpoint) -> OracleEndpoint:
        mean = sampled_mean(e.service)
        return OracleEndpoint(
            e.workers,
            lambda t: mean * e.slowdown(t),
            lambda rng, t: e.service(rng, t) * e.slowdown(t),
        )

    times = [t for t, _ in scenario.arrivals]
    latencies = earliest_completion([spec(e) for e in scenario.endpoints], times, seed)
    return SimResult(
        [
            SimOutcome(t, p, s, 200, None)
            for (t, p), s in zip(scenario.arrivals, latencies, strict=True)
        ]
    )


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
            with_oracle=True,
        ),
    ]
    rate = 0.5 * _capacity(equal)
    duration = messages / rate
    slow = _endpoints(equal)
    start, end = 0.3 * duration, 0.6 * duration
    slow[3].slowdown = lambda t: 20.0 if start <= t < end else 1.0
    out.append(
        Scenario("d slows 20x, recovers", slow, _steady(rng, rate, messages), (start, end), True)
    )
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
        f"  {policy:<16}{r.percentile_ms(50):8.1f}{r.percentile_ms(99):9.1f}"
        f"{r.percentile_ms(99.9):10.1f}{r.success_rate():10.3%}   {share}"
    )


# (label, adaptive's figure, bound, True when the figure must stay at or under the bound)
Check = tuple[str, float, float, bool]


def _ratio(x: SimResult, y: SimResult, q: float) -> float:
    return x.percentile_ms(q) / y.percentile_ms(q)


def _against(results: dict[str, SimResult], mode: str, who: str) -> list[Check]:
    """The speed targets against the baselines in one mode (suffix "" or UNLIMITED)."""
    a, rr, lr = results[who], results["round_robin" + mode], results["least_request" + mode]
    which = " (baselines as Envoy/Linkerd: no limit)" if mode else " (baselines under the limit)"
    return [
        ("p99 / round_robin" + which, _ratio(a, rr, 99), 0.5, True),
        ("p99 / least_request" + which, _ratio(a, lr, 99), 0.8, True),
        ("p99.9 / round_robin" + which, _ratio(a, rr, 99.9), 1 / 3, True),
    ]


def _checks(
    name: str, results: dict[str, SimResult], unloaded: float, who: str = "adaptive"
) -> list[Check]:
    a = results[who]
    modes = [m for m in ("", UNLIMITED) if "round_robin" + m in results]
    if name.startswith(("unequal", "d slows")):
        return [c for m in modes for c in _against(results, m, who)]
    if name.startswith("d answers"):
        return [("success", a.success_rate(), 0.999, False)]
    if name == "equal":
        return [
            (
                f"p99 / least_request{' (no limit)' if m else ''}",
                _ratio(a, results["least_request" + m], 99),
                1.1,
                True,
            )
            for m in modes
        ]
    low = a.statuses(LOW)
    return [
        (
            f"high-priority p99 / unloaded p99 ({unloaded:.1f} ms)",
            a.percentile_ms(99, HIGH) / unloaded,
            2.0,
            True,
        ),
        (
            "low-priority messages neither served nor 429",
            float(sum(n for s, n in low.items() if s not in (200, 429))),
            0.0,
            True,
        ),
    ]


# (scenario, adaptive's check, the oracle's figure for the same check when it has one)
Found = tuple[str, Check, float | None]


def _found(scenario: str, results: dict[str, SimResult], unloaded: float) -> list[Found]:
    checks = _checks(scenario, results, unloaded)
    if ORACLE not in results:
        return [(scenario, c, None) for c in checks]
    reach = _checks(scenario, results, unloaded, ORACLE)
    return [(scenario, c, o[1]) for c, o in zip(checks, reach, strict=True)]


def run_seed(messages: int, seed: int) -> list[Found]:
    """Every scenario under one seed, printed; the targets' figures for adaptive."""
    unloaded = unloaded_p99_ms(seed)
    print(f"\n===== seed {seed}: unloaded p99 (10% load, equal endpoints): {unloaded:.1f} ms")
    found: list[Found] = []
    for scenario in scenarios(messages, seed):
        print(f"\n{scenario.name}  ({len(scenario.arrivals)} messages)")
        print(f"  {'policy':<16}{'p50 ms':>8}{'p99 ms':>9}{'p99.9 ms':>10}{'success':>10}   share")
        results = {}
        burst = scenario.name.startswith("burst")
        runs: list[tuple[str, int | None]] = [(p, None) for p in POLICY_NAMES]
        if not burst:  # the burst is about RelayCore's queue, which only a limit engages
            runs += [(p + UNLIMITED, NO_LIMIT) for p in BASELINES]
        for label, limit in runs:
            policy = label.removesuffix(UNLIMITED)
            results[label] = simulate(
                scenario.endpoints, scenario.arrivals, policy, seed=seed, max_concurrency=limit
            )
            print(_row(label, results[label]))
        if scenario.with_oracle:
            results[ORACLE] = oracle_result(scenario, seed)
            print(_row(ORACLE, results[ORACLE]))
        print(_ratios(results))
        found += _found(scenario.name, results, unloaded)
        if scenario.focus is not None:
            windowed = {p: r.arrived_between(*scenario.focus) for p, r in results.items()}
            _print_focus(scenario.focus, windowed)
            found += _found(scenario.name + " (while d is slow)", windowed, unloaded)
        if burst:
            _print_burst(results)
    return found


def _ratios(results: dict[str, SimResult]) -> str:
    a, rr, lr = results["adaptive"], results["round_robin"], results["least_request"]
    return (
        f"  adaptive/round_robin  p99 {_ratio(a, rr, 99):.2f}  p99.9 {_ratio(a, rr, 99.9):.2f}   "
        f"adaptive/least_request  p99 {_ratio(a, lr, 99):.2f}  p99.9 {_ratio(a, lr, 99.9):.2f}"
        "   (baselines under the limit)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    started = time.perf_counter()
    per_seed = [run_seed(args.messages, seed) for seed in args.seeds]
    print(
        f"\ntargets for adaptive: median over seeds {args.seeds} (each seed's figure);"
        " 'oracle': the clairvoyant oracle's median figure for the same target"
    )
    for i, (scenario_name, (label, _, bound, upper), reach) in enumerate(per_seed[0]):
        values = [found[i][1][1] for found in per_seed]
        median = statistics.median(values)
        ok = median <= bound if upper else median >= bound
        each = ", ".join(f"{v:.3g}" for v in values)
        oracle = ""
        if reach is not None:
            oracle = f"; oracle {statistics.median(f[i][2] or math.nan for f in per_seed):.3g}"
        print(
            f"  [{'met' if ok else 'MISSED':>6}] {scenario_name}: {label} = {median:.3g} "
            f"({'<=' if upper else '>='} {bound:.3g}; {each}){oracle}"
        )
    print(f"\n{time.perf_counter() - started:.1f} s")


def _print_focus(focus: tuple[float, float], windowed: dict[str, SimResult]) -> None:
    print(f"  only messages that arrived while d was slow ({focus[0]:.1f}-{focus[1]:.1f} s):")
    for policy, r in windowed.items():
        print(_row(policy, r))
    print(_ratios(windowed))


def _print_burst(results: dict[str, SimResult]) -> None:
    for policy, r in results.items():
        parts = []
        for level in (HIGH, MID, LOW):
            counts = dict(sorted(r.statuses(level).items()))
            parts.append(f"p{level}: p99 {r.percentile_ms(99, level):6.1f} ms {counts}")
        print(f"  {policy:<16}" + "  |  ".join(parts))


if __name__ == "__main__":
    main()
