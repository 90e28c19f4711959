import random
from collections import Counter

import pytest

from routing.policies import (
    POLICY_NAMES,
    Adaptive,
    AdaptiveParams,
    LeastRequest,
    PeakEwma,
    RoundRobin,
    UnknownPolicy,
    make_policy,
    pick_some,
)
from tests.support.routing import state


def test_choose_round_robin_cycles_through_candidates() -> None:
    policy, pool = RoundRobin(), [state("a"), state("b"), state("c")]
    assert [policy.choose(pool, 0.0).name for _ in range(6)] == ["b", "c", "a", "b", "c", "a"]


def test_choose_least_request_prefers_fewer_in_flight() -> None:
    policy = LeastRequest(random.Random(1))
    assert policy.choose([state("busy", 5), state("idle", 0)], 0.0).name == "idle"


def test_choose_least_request_samples_two_so_busiest_can_still_win_a_draw() -> None:
    policy = LeastRequest(random.Random(1))
    pool = [state("a", 3), state("b", 3), state("c", 9)]
    chosen = Counter(policy.choose(pool, 0.0).name for _ in range(300))
    assert chosen["c"] == 0 and chosen["a"] > 50 and chosen["b"] > 50


def test_choose_least_request_is_reproducible_under_a_seed() -> None:
    pool = [state(n) for n in "abcd"]
    runs = [[LeastRequest(random.Random(3)).choose(pool, 0.0).name for _ in range(20)]]
    runs.append([LeastRequest(random.Random(3)).choose(pool, 0.0).name for _ in range(20)])
    assert runs[0] == runs[1]


def test_choose_peak_ewma_avoids_endpoint_after_latency_peak() -> None:
    policy = PeakEwma(random.Random(1))
    for t in range(10):
        policy.observe("a", 0.010, False, float(t))
        policy.observe("b", 0.010, False, float(t))
    policy.observe("b", 0.500, False, 10.0)
    assert policy.choose([state("a"), state("b")], 10.0).name == "a"


def test_choose_peak_ewma_multiplies_latency_by_pending_plus_one() -> None:
    policy = PeakEwma(random.Random(1))
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.025, False, 0.0)
    assert policy.choose([state("a", in_flight=2), state("b")], 0.0).name == "b"


def _adaptive(**params: float) -> Adaptive:
    return Adaptive(random.Random(1), AdaptiveParams(**params))  # type: ignore[arg-type]


def test_choose_adaptive_prefers_faster_endpoint() -> None:
    policy = _adaptive()
    policy.observe("fast", 0.010, False, 0.0)
    policy.observe("slow", 0.040, False, 0.0)
    assert policy.choose([state("slow"), state("fast")], 0.0).name == "fast"


def test_choose_adaptive_penalises_outstanding_work_superlinearly() -> None:
    policy = _adaptive(concurrency_hint=2.0, penalty_exponent=3.0)
    policy.observe("fast", 0.010, False, 0.0)
    policy.observe("slow", 0.040, False, 0.0)
    # fast: 10 ms x (1 + (6/2)^3) = 280 ms; slow and idle: 40 ms.
    assert policy.choose([state("slow"), state("fast", in_flight=6)], 0.0).name == "slow"


def test_choose_adaptive_avoids_endpoint_failing_fast() -> None:
    policy = _adaptive()
    for t in range(20):
        policy.observe("ok", 0.020, False, t * 0.01)
        policy.observe("broken", 0.0001, True, t * 0.01)
    assert policy.choose([state("broken"), state("ok")], 0.2).name == "ok"


def test_choose_adaptive_honours_retry_after() -> None:
    policy = _adaptive()
    policy.observe("fast", 0.010, False, 0.0)
    policy.observe("slow", 0.040, False, 0.0)
    fast = state("fast")
    fast.stats.retry_after_until = 5.0
    assert policy.choose([fast, state("slow")], 1.0).name == "slow"


def test_choose_adaptive_avoids_endpoint_with_poor_health_hint() -> None:
    policy = _adaptive(hint_weight=4.0)
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.012, False, 0.0)
    a = state("a")
    a.stats.set_health(0.1, now=0.0)
    assert policy.choose([a, state("b")], 0.0).name == "b"


def test_choose_adaptive_tries_again_an_endpoint_slow_long_ago() -> None:
    policy = _adaptive(stale_s=1.0)
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.200, False, 0.0)
    policy.observe("a", 0.010, False, 30.0)
    # b's 200 ms is 30 time constants old: it now looks as good as a, and a is busy.
    assert policy.choose([state("a", in_flight=1), state("b")], 30.0).name == "b"


def test_choose_adaptive_compares_only_a_sample_so_routers_do_not_herd() -> None:
    policy = _adaptive(sample_size=2)
    for name in "abcdefgh":
        policy.observe(name, 0.010 if name == "a" else 0.011, False, 0.0)
    pool = [state(n) for n in "abcdefgh"]
    chosen = Counter(policy.choose(pool, 0.0).name for _ in range(400))
    assert 0.15 < chosen["a"] / 400 < 0.4 and len(chosen) == 8


def test_create_adaptive_params_rejects_sample_of_one() -> None:
    with pytest.raises(ValueError, match="sample_size"):
        AdaptiveParams(sample_size=1)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_make_policy_builds_each_named_policy(name: str) -> None:
    assert make_policy(name, random.Random(0)).name == name


def test_make_policy_rejects_unknown_name() -> None:
    with pytest.raises(UnknownPolicy, match="random"):
        make_policy("random")


def test_choose_adaptive_probes_stale_endpoint_one_request_at_a_time() -> None:
    policy = _adaptive(stale_s=1.0)
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.200, False, 0.0)
    policy.observe("a", 0.010, False, 30.0)
    # b is being probed (one request pending): its old 200 ms counts again until it answers.
    assert policy.choose([state("a", in_flight=1), state("b", in_flight=1)], 30.0).name == "a"


def test_observe_adaptive_latency_rises_faster_than_it_falls() -> None:
    policy = _adaptive(decay_s=1.0, rise_s=0.1)
    for name, second in [("up", 0.100), ("down", 0.001)]:
        policy.observe(name, 0.010, False, 0.0)
        policy.observe(name, second, False, 0.1)
    up, down = (policy.cost(state(n), 0.1) for n in ("up", "down"))
    assert up - 0.010 > 0.5 * (0.100 - 0.010) and 0.010 - down < 0.2 * (0.010 - 0.001)


def test_choose_adaptive_counts_queue_depth_reported_by_endpoint() -> None:
    policy = _adaptive(concurrency_hint=2.0)
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.012, False, 0.0)
    a = state("a")
    a.stats.queued = 6
    assert policy.choose([a, state("b")], 0.0).name == "b"


def test_choose_adaptive_counts_turns_waited_behind_outstanding_work() -> None:
    policy = _adaptive(concurrency_hint=8.0)
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.012, False, 0.0)
    # A limit of 4 says 2 workers: a third request waits half a turn, 15 ms > 12 ms.
    busy = state("a", in_flight=2, max_concurrency=4)
    assert policy.choose([busy, state("b", max_concurrency=4)], 0.0).name == "b"


def test_choose_adaptive_avoids_endpoint_silent_far_longer_than_its_latency() -> None:
    policy = _adaptive()
    policy.observe("a", 0.010, False, 0.0)
    policy.observe("b", 0.010, False, 0.0)
    stuck = state("b")
    stuck.stats.begin(1.0)  # no answer for 100 ms: 10 times the estimate
    policy.observe("a", 0.010, False, 1.099)  # while a answers
    chosen = Counter(policy.choose([state("a"), stuck], 1.1 + 0.0001 * i).name for i in range(20))
    assert chosen == {"a": 20}


def test_cost_adaptive_takes_no_silence_as_evidence_while_no_endpoint_is_heard_from() -> None:
    # The router's loop stalled for 100 ms (or the machine did): every call in flight looks
    # silent, which says nothing against the endpoints that have some.
    policy = _adaptive()
    policy.observe("a", 0.010, False, 1.0)
    quiet, waiting = state("a"), state("a")
    quiet.stats.begin(1.1)
    waiting.stats.begin(1.0)
    assert policy.cost(waiting, 1.1) == policy.cost(quiet, 1.1)


def test_cost_adaptive_ignores_silence_within_normal_tail() -> None:
    policy = _adaptive(silence_factor=3.0)
    policy.observe("a", 0.010, False, 0.0)
    quiet, waiting = state("a"), state("a")
    quiet.stats.begin(1.025)
    waiting.stats.begin(1.0)  # 25 ms without an answer: within 3 x 10 ms
    assert policy.cost(waiting, 1.025) == policy.cost(quiet, 1.025)


def _probe_times(policy: Adaptive, answers: list[float], until_s: float) -> list[float]:
    """Times "slow" was chosen, each probe answering with the next latency in ``answers``."""
    pool = [state("a"), state("b"), state("slow")]
    for s in pool:
        policy.observe(s.name, 0.010 if s.name != "slow" else 1.0, False, 0.0)
    times = []
    for k in range(1, int(until_s * 10) + 1):
        now = k / 10
        chosen = policy.choose(pool, now).name
        if chosen == "slow":
            times.append(now)
        latency = answers[min(len(times), len(answers)) - 1] if chosen == "slow" else 0.010
        policy.observe(chosen, latency, False, now)
    return times


def test_choose_adaptive_backs_off_probing_endpoint_still_slow() -> None:
    policy = _adaptive(probe_s=2.0, probe_max_s=8.0)
    # The slow answer that revealed it counts as a first probe: waits of 4, 8 and then 8 s
    # (the cap), not one slow message every 2 s.
    assert _probe_times(policy, [1.0], 30.0) == [4.0, 12.0, 20.0, 28.0]


def test_choose_adaptive_probes_again_at_base_interval_after_fast_probe() -> None:
    policy = _adaptive(probe_s=2.0, probe_max_s=8.0)
    times = _probe_times(policy, [1.0, 0.010], 16.0)
    assert times[:2] == [4.0, 12.0] and len(times) > 2 and times[2] <= 14.0


def test_choose_adaptive_probes_endpoint_that_turned_slow_after_twice_the_interval() -> None:
    # Linkerd's case: an endpoint in use turns slow. Its first probe waits 2 x probe_s, so
    # that a slowdown of a few seconds costs the calls that revealed it and no probe more.
    policy = _taught({"a": 0.010, "b": 0.010}, probe_s=2.0)
    pool = [state("a"), state("b")]
    policy.observe("b", 0.400, False, 0.5)
    assert [policy.choose(pool, t).name for t in (2.4, 4.4)] == ["a", "a"]
    assert policy.choose(pool, 4.6).name == "b"


def test_choose_adaptive_takes_the_least_loaded_among_endpoints_of_about_the_same_cost() -> None:
    # 10 and 10.5 ms are within the jitter of an average; the count of calls in flight is exact.
    policy = _taught({"a": 0.0100, "b": 0.0105})
    pool = [state("a", in_flight=1, max_concurrency=4), state("b", max_concurrency=4)]
    assert {policy.choose(pool, 0.0).name for _ in range(10)} == {"b"}


def test_choose_adaptive_takes_a_clearly_faster_endpoint_even_if_it_is_busier() -> None:
    policy = _taught({"a": 0.010, "b": 0.015})
    pool = [state("a", in_flight=1, max_concurrency=4), state("b", max_concurrency=4)]
    assert {policy.choose(pool, 0.0).name for _ in range(10)} == {"a"}


def test_observe_adaptive_learns_latency_per_turn_of_queueing() -> None:
    # Both a and b serve in 10 ms on 2 workers (limit 4). a's answer waited half a turn, as
    # it should behind 2 calls; taken at face value, a would look 1.5 times as slow as b.
    policy = _taught({"a": 0.010, "b": 0.010})
    pool = [state("a", max_concurrency=4), state("b", max_concurrency=4)]
    for s in pool:
        policy.choose([s], 0.0)
    policy.observe("a", 0.015, False, 1.0, ahead=2)
    policy.observe("b", 0.010, False, 1.0, ahead=0)
    assert policy.cost(pool[0], 1.0) == pytest.approx(policy.cost(pool[1], 1.0), rel=0.01)


def test_choose_adaptive_sends_one_request_at_a_time_to_endpoint_not_yet_measured() -> None:
    policy = _adaptive()
    policy.observe("a", 0.010, False, 0.0)
    # "new" has answered nothing yet: until it does, even a busy known endpoint is preferred.
    pool = [state("a", in_flight=3), state("new", in_flight=1)]
    assert {policy.choose(pool, 0.0).name for _ in range(20)} == {"a"}


def test_choose_adaptive_looks_past_a_sample_of_new_endpoints_with_calls_out() -> None:
    policy = _adaptive(sample_size=2)
    policy.observe("known", 0.010, False, 0.0)
    # Most samples of two hold only new endpoints, each with its first call out.
    pool = [state(n, in_flight=1) for n in "abcde"] + [state("known", in_flight=2)]
    assert {policy.choose(pool, 0.0).name for _ in range(30)} == {"known"}


def _taught(latencies: dict[str, float], **params: float) -> Adaptive:
    policy = _adaptive(**params)
    for name, latency in latencies.items():
        policy.observe(name, latency, False, 0.0)
    return policy


def test_viable_adaptive_passes_over_free_endpoint_far_slower_than_queueing_for_a_busy_one() -> (
    None
):
    policy = _taught({"fast": 0.010, "slow": 0.200})
    free, busy = [state("slow", 0, max_concurrency=4)], [state("fast", 4, max_concurrency=4)]
    viable, look_again_s = policy.viable(free, busy, 0.0)
    assert viable == []
    # fast: 10 ms x 2.5 turns behind its 4 calls on 2 workers = 25 ms; slow: 200 ms
    assert look_again_s == pytest.approx(0.175, rel=0.05)


def test_viable_adaptive_keeps_free_endpoint_about_as_fast_as_queueing_for_a_busy_one() -> None:
    policy = _taught({"fast": 0.010, "steady": 0.020})
    free, busy = [state("steady", 0, max_concurrency=4)], [state("fast", 4, max_concurrency=4)]
    assert policy.viable(free, busy, 0.0) == (free, None)


def test_viable_adaptive_holds_nothing_when_off_or_when_busy_ones_are_unmeasured() -> None:
    free, busy = [state("slow", 0, max_concurrency=4)], [state("fast", 4, max_concurrency=4)]
    assert _taught({"fast": 0.010, "slow": 0.200}, hold_margin=0).viable(free, busy, 0.0) == (
        free,
        None,
    )
    assert _taught({"slow": 0.200}).viable(free, busy, 0.0) == (free, None)


@pytest.mark.parametrize(
    "policy", [RoundRobin(), LeastRequest(random.Random(1)), PeakEwma(random.Random(1))]
)
def test_viable_baselines_send_to_whatever_is_free_as_envoy_and_linkerd_do(policy) -> None:
    free, busy = [state("slow", 0, max_concurrency=4)], [state("fast", 4, max_concurrency=4)]
    assert policy.viable(free, busy, 0.0) == (free, None)


def test_create_adaptive_params_rejects_hold_margin_below_one() -> None:
    with pytest.raises(ValueError, match="hold_margin"):
        AdaptiveParams(hold_margin=0.5)


def test_pick_some_draws_distinct_indices_in_an_order_favouring_no_place() -> None:
    rng = random.Random(5)
    draws = [pick_some(6, 3, rng) for _ in range(6000)]
    assert all(len(set(d)) == 3 and all(0 <= i < 6 for i in d) for d in draws)
    # ties are broken by order: every place must come first about equally often
    first = Counter(d[0] for d in draws)
    assert sorted(first) == list(range(6)) and min(first.values()) > 850
    assert sorted(pick_some(4, 4, rng)) == [0, 1, 2, 3]  # all of them: a permutation


def test_probe_adaptive_endpoint_never_chosen_on_next_decision() -> None:
    policy = Adaptive(random.Random(3), AdaptiveParams(probe_s=2.0))
    known = [state("a"), state("b"), state("c")]
    for s in known:
        policy.observe(s.name, 0.01, False, 0.0)
    for t in range(5):
        for _ in known:
            policy.choose(known, 0.1 * t)
    assert policy.choose([*known, state("new")], 1.0).name == "new"


def test_skip_adaptive_probe_while_one_is_in_flight() -> None:
    policy = Adaptive(random.Random(3), AdaptiveParams(probe_s=2.0))
    pool = [state("a"), state("b"), state("slow", in_flight=1)]
    for s in pool:
        policy.observe(s.name, 0.01 if s.name != "slow" else 1.0, False, 0.0)
    chosen = Counter(policy.choose(pool, 10.0 + 0.001 * i).name for i in range(50))
    assert chosen["slow"] == 0
