import asyncio
import random

from routing.record import Observation
from routing.simulation import (
    SimEndpoint,
    VirtualTimeLoop,
    endpoints_from_observations,
    lognormal,
    poisson_arrivals,
    simulate,
)


def _scenario() -> tuple[list[SimEndpoint], list[tuple[float, int]]]:
    endpoints = [SimEndpoint(n, lognormal(0.01), workers=2) for n in "ab"]
    endpoints[1].slowdown = lambda now: 10.0
    arrivals = poisson_arrivals(random.Random(1), lambda t: 100.0, 3.0)
    return endpoints, arrivals


def test_virtual_loop_jumps_over_sleeps_instead_of_waiting() -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(asyncio.sleep(3600))
        assert loop.time() == 3600.0
    finally:
        loop.close()


def test_simulate_gives_same_figures_under_same_seed() -> None:
    endpoints, arrivals = _scenario()
    runs = [simulate(endpoints, arrivals, "adaptive", seed=3) for _ in range(2)]
    assert [o.latency_s for o in runs[0].outcomes] == [o.latency_s for o in runs[1].outcomes]


def test_simulate_adaptive_sends_less_to_slow_endpoint_than_round_robin() -> None:
    endpoints, arrivals = _scenario()
    adaptive = simulate(endpoints, arrivals, "adaptive", seed=3).share()["b"]
    assert adaptive < 0.5 * simulate(endpoints, arrivals, "round_robin", seed=3).share()["b"]


def test_build_sim_endpoints_replaying_observed_latencies() -> None:
    observations = [Observation(0.0, "a", 0.02, False), Observation(0.1, "a", 0.5, True)]
    (endpoint,) = endpoints_from_observations(observations)
    assert endpoint.name == "a" and endpoint.service(random.Random(0), 0.0) == 0.02
