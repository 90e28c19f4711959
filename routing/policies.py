"""Load-balancing policies: which endpoint, among those able to take a message, gets it.

Every policy sees only candidates that already passed the router's filters (breaker, concurrency
limit, not yet tried for this message), so a policy is only about preference. Randomness is
injected as a ``random.Random`` so that choices are reproducible under a seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from routing.endpoints import EndpointState
from routing.windows import DecayingAverage

POLICY_NAMES = ("round_robin", "least_request", "peak_ewma", "adaptive")


# The cost of an endpoint with requests pending and no latency known yet (Finagle's answer).
UNKNOWN_PENALTY = 1e6


class UnknownPolicy(ValueError):
    """A policy name that is not one of POLICY_NAMES (HTTP 422)."""


class Policy:
    """Base policy: subclasses override ``choose`` and, if they learn, ``observe``."""

    name = "policy"

    def choose(self, candidates: Sequence[EndpointState], now: float) -> EndpointState:
        raise NotImplementedError

    def observe(
        self, name: str, latency_s: float, failed: bool, now: float, ahead: int = 0
    ) -> None:
        """Learn from one finished call, sent when ``ahead`` others were outstanding on the
        endpoint; stateless policies ignore it."""

    def cost(self, state: EndpointState, now: float) -> float | None:
        """The policy's current cost for ``state`` (lower is better), if it has one."""
        return None

    def forget(self, name: str) -> None:
        """Drop what was learnt about a removed endpoint."""

    def tick(self, now: float) -> None:
        """The router's loop was seen running on time at ``now`` (a timer fired when due)."""

    def viable(
        self, free: list[EndpointState], busy: list[EndpointState], now: float
    ) -> tuple[list[EndpointState], float | None]:
        """The free endpoints worth sending to now, given that ``busy`` ones are at their limit.

        Returns them and, when some were held back, the seconds after which to look again.
        Envoy's and Linkerd's balancers send to whatever is free: so do the baselines.
        """
        return free, None


def pick_two(n: int, rng: random.Random) -> tuple[int, int]:
    """Two distinct indices in range(n), n >= 2, without building a list."""
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    return i, j + (j >= i)


def pick_some(n: int, k: int, rng: random.Random) -> list[int]:
    """k distinct indices in range(n), k <= n, in random order: the first k steps of a
    Fisher-Yates shuffle of range(n), with only the swapped places stored. Half of what
    ``rng.sample`` costs for the handful a decision compares. The order is random too, so
    that ties, broken by order, favour no place in the list."""
    moved: dict[int, int] = {}
    chosen = []
    for i in range(k):
        j = i + int(rng.random() * (n - i))
        chosen.append(moved.get(j, j))
        moved[j] = moved.get(i, i)
    return chosen


class RoundRobin(Policy):
    name = "round_robin"

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, candidates: Sequence[EndpointState], now: float) -> EndpointState:
        self._turn += 1
        return candidates[self._turn % len(candidates)]


class LeastRequest(Policy):
    """Envoy's power of two choices: the less loaded of two random candidates."""

    name = "least_request"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[EndpointState], now: float) -> EndpointState:
        if len(candidates) == 1:
            return candidates[0]
        i, j = pick_two(len(candidates), self._rng)
        a, b = candidates[i], candidates[j]
        return b if b.stats.in_flight < a.stats.in_flight else a


class PeakEwma(Policy):
    """Linkerd/Finagle peak EWMA: latency estimate that jumps to peaks, times (in-flight + 1)."""

    name = "peak_ewma"
    # Finagle's answer for an endpoint with requests pending and no latency yet: look costly,
    # so that one probe goes there at a time until it answers.
    UNKNOWN_PENALTY = UNKNOWN_PENALTY

    def __init__(self, rng: random.Random | None = None, decay_s: float = 10.0) -> None:
        self._rng = rng or random.Random()
        self._decay_s = decay_s
        self._ewma: dict[str, DecayingAverage] = {}

    def choose(self, candidates: Sequence[EndpointState], now: float) -> EndpointState:
        if len(candidates) == 1:
            return candidates[0]
        i, j = pick_two(len(candidates), self._rng)
        a, b = candidates[i], candidates[j]
        return b if self.cost(b, now) < self.cost(a, now) else a

    def observe(
        self, name: str, latency_s: float, failed: bool, now: float, ahead: int = 0
    ) -> None:
        avg = self._ewma.get(name)
        if avg is None:
            avg = self._ewma[name] = DecayingAverage(self._decay_s)
        if latency_s > avg.value_towards(0.0, now):
            avg.jump_to(latency_s, now)
        else:
            avg.add(latency_s, now)

    def cost(self, state: EndpointState, now: float) -> float:
        pending = state.stats.in_flight
        avg = self._ewma.get(state.name)
        if avg is None or avg.empty:
            return self.UNKNOWN_PENALTY + pending if pending else 0.0
        # Idle estimates decay towards zero so that a once-slow endpoint is tried again.
        return avg.value_towards(0.0, now) * (pending + 1)

    def forget(self, name: str) -> None:
        self._ewma.pop(name, None)


@dataclass(slots=True)
class AdaptiveParams:
    """Knobs of the adaptive policy; plain floats and ints so an Optuna search can set them."""

    decay_s: float = 1.0  # time constant of the latency average
    rise_s: float = 0.25  # time constant when a sample exceeds the average: slowdowns show fast
    # Without samples, the estimate fades towards the best peer's over this: a fallback only,
    # since probes (at least every probe_max_s) are what notice a recovery. Fading faster
    # makes a slow replica look fast again before anything says so, and the tail pays.
    stale_s: float = 120.0
    penalty_exponent: float = 3.0  # C3's cubic: queueing delay grows super-linearly with load
    concurrency_hint: float = 8.0  # outstanding requests an endpoint absorbs before queueing
    # Share of an endpoint's concurrency limit it serves in parallel; beyond, a new request
    # waits its turn there (the limit is the operator's word on what the endpoint can take).
    parallel_share: float = 0.5
    # Calls in flight with no answer for this many times the latency estimate are evidence
    # of a slowdown before any of them returns, and the silence then stands for the latency.
    # At 1 it does as soon as it exceeds the estimate: the longer an endpoint has said
    # nothing, the less it gets, so a slowdown catches fewer messages before its first answer.
    silence_factor: float = 1.0
    error_weight: float = 20.0  # a fully failing endpoint costs this many times more, plus one
    error_decay_s: float = 5.0
    hint_weight: float = 2.0  # cost multiplier added by a health score of 0
    hint_ttl_s: float = 60.0  # a health hint's influence fades over this
    sample_size: int = 3  # candidates compared per decision; >= 2, never all, to avoid herding
    # A candidate not chosen for this long, with nothing in flight, gets the next message as
    # a probe (one at a time): an endpoint that never looked cheapest among those sampled,
    # e.g. new, or marked by errors that fade only asymptotically, is still tried. Each probe
    # that finds it still slow doubles its wait, up to probe_max_s, so that a lasting
    # slowdown costs one slow message a minute rather than one every few seconds. (Failures
    # do not: a failed probe costs a retry, not a tail, and the breaker backs off on its own.)
    # Each probe of a slow endpoint is one slow message; at 10 s rather than 5, a 4x slower
    # replica adds one message fewer per 20 s to the tail (p99.9 of 3,000 is the 3rd slowest).
    probe_s: float = 10.0
    probe_max_s: float = 60.0
    # A free endpoint expected to take more than this many times as long as queueing for a
    # slot on the best busy one is passed over: the message waits for the faster slot (0: never).
    # At 1, whichever is expected to answer first, as the clairvoyant oracle of the benchmarks
    # does; a margin above 1 sent messages to a slower endpoint's queue to save a short wait.
    hold_margin: float = 1.0
    # Costs within this share of the cheapest are a tie: estimates jitter by about that much,
    # while the count of outstanding calls is exact, so among equals the least loaded wins
    # (least request's rule), and only a real difference in speed overrides it.
    tie_share: float = 0.15

    def __post_init__(self) -> None:
        if self.sample_size < 2:
            raise ValueError("sample_size must be at least 2")
        if self.rise_s <= 0 or self.decay_s <= 0 or self.stale_s <= 0 or self.probe_s <= 0:
            raise ValueError("time constants must be positive")
        if self.probe_max_s < self.probe_s:
            raise ValueError("probe_max_s must be at least probe_s")
        if not 0 < self.parallel_share <= 1:
            raise ValueError("parallel_share must be in (0, 1]")
        if self.silence_factor < 1:
            raise ValueError("silence_factor must be at least 1")
        if self.hold_margin != 0 and self.hold_margin < 1:
            raise ValueError("hold_margin must be 0 (off) or at least 1")
        if self.tie_share < 0:
            raise ValueError("tie_share must be at least 0")


@dataclass(slots=True)
class _Learnt:
    latency: DecayingAverage
    errors: DecayingAverage


class Adaptive(Policy):
    """Expected-latency routing in the spirit of C3.

    cost = latency estimate x turns waited behind outstanding work on ``parallel`` workers
                            x (1 + (outstanding / hint) ^ exponent)
                             x (1 + error_weight x recent error rate)
                             x (1 + hint_weight x (1 - health score))
    over a random sample of candidates; endpoints inside a Retry-After window are avoided
    while any other candidate exists. A candidate that was not chosen for ``probe_s`` (or
    ever) and has nothing in flight is chosen first, as a probe: without it, an endpoint whose
    cost is never the lowest of its sample (unknown endpoints cost as much as the best peer,
    errors fade asymptotically) could get no traffic at all however healthy it is. A probe
    answering slower than ``PROBE_SLACK`` times the best peer's estimate doubles that
    endpoint's wait before the next one; a probe answering fast resets it.
    """

    PROBE_SLACK = 2.0

    name = "adaptive"

    def __init__(self, rng: random.Random | None = None, params: AdaptiveParams | None = None):
        self._rng = rng or random.Random()
        self.params = params or AdaptiveParams()
        self._learnt: dict[str, _Learnt] = {}
        self._used: dict[str, float] = {}  # when each endpoint was last chosen or heard from
        self._probe_wait: dict[str, float] = {}  # backed-off probe intervals, by endpoint
        self._probing: set[str] = set()  # endpoints whose probe has not answered yet
        self._parallel: dict[str, float] = {}  # workers assumed per endpoint (see _queued_turns)
        self._alive_at = -math.inf  # when an answer or a timer last showed the loop running

    def choose(self, candidates: Sequence[EndpointState], now: float) -> EndpointState:
        pool = [c for c in candidates if c.stats.retry_after_until <= now] or candidates
        chosen = pool[0] if len(pool) == 1 else self._probe(pool, now) or self._cheapest(pool, now)
        self._used[chosen.name] = now
        self._parallel[chosen.name] = self._workers(chosen)
        return chosen

    def _workers(self, state: EndpointState) -> float:
        """Calls the endpoint is taken to serve in parallel (see _queued_turns)."""
        return self.params.parallel_share * state.endpoint.max_concurrency

    def _probe(self, pool: Sequence[EndpointState], now: float) -> EndpointState | None:
        used, wait, probe_s = self._used, self._probe_wait, self.params.probe_s
        for state in pool:
            name = state.name
            if state.stats.in_flight == 0 and used.get(name, -math.inf) <= now - wait.get(
                name, probe_s
            ):
                self._probing.add(name)
                return state
        return None

    def viable(
        self, free: list[EndpointState], busy: list[EndpointState], now: float
    ) -> tuple[list[EndpointState], float | None]:
        """Passes over a free endpoint much slower than waiting for a busy fast one (C3's idea
        that the expected wait, not idleness, decides): under load, the slowest replica's free
        slot is where the tail comes from. If every free one is passed over, the message
        waits in the queue for the next slot, and the router looks again once waiting no
        longer pays, in case the busy ones stall (their silence then raises their cost).
        """
        margin = self.params.hold_margin
        if not margin:
            return free, None
        # Samples on both sides, as in `choose`: the decision stays a few cost evaluations
        # however many endpoints there are (all of them up to `sample_size`).
        known = [self._cost(b, now, None) for b in self._sample(busy) if self._measured(b.name)]
        if not known:
            return free, None
        queued = min(known)
        costs = [(self._cost(s, now, None), s) for s in self._sample(free)]
        keep = [s for cost, s in costs if cost <= margin * queued]
        if keep:
            return keep, None
        return keep, max(min(cost for cost, _ in costs) - queued, 0.001)

    def _measured(self, name: str) -> bool:
        learnt = self._learnt.get(name)
        return learnt is not None and not learnt.latency.empty

    def _judge(self, name: str, latency_s: float, failed: bool) -> None:
        """Sets the wait before ``name``'s next probe from one answer.

        A slow answer to a probe doubles the wait. A slow answer to ordinary traffic is the
        evidence that made the endpoint look slow in the first place: it counts as one probe
        that found it slow, so the first probe comes after twice ``probe_s`` rather than
        while a slowdown is still young. A fast answer resets the wait.
        """
        probing = name in self._probing
        self._probing.discard(name)
        if failed:  # the breaker's business; the next probe will tell
            return
        others = [e.latency.value() for n, e in self._learnt.items() if n != name]
        best = min((v for v in others if v > 0), default=None)
        if best is None or latency_s <= self.PROBE_SLACK * best:
            self._probe_wait.pop(name, None)
            return
        p = self.params
        wait = self._probe_wait.get(name, p.probe_s)
        self._probe_wait[name] = min(
            2.0 * wait if probing else max(wait, 2.0 * p.probe_s), p.probe_max_s
        )

    def _cheapest(self, pool: Sequence[EndpointState], now: float) -> EndpointState:
        costs = self._costs(self._sample(pool), now)
        cheapest = min(cost for cost, _ in costs)
        if cheapest >= UNKNOWN_PENALTY and len(costs) < len(pool):
            # Every sampled endpoint is new with its first call out: a known one elsewhere
            # is a better bet than a second blind call (rare: only while endpoints are new).
            costs = self._costs(pool, now)
            cheapest = min(cost for cost, _ in costs)
        tie = cheapest * (1.0 + self.params.tie_share)
        return min(
            (c for c in costs if c[0] <= tie),
            key=lambda c: (c[1].stats.in_flight + c[1].stats.queued, c[0]),
        )[1]

    def _costs(
        self, candidates: Sequence[EndpointState], now: float
    ) -> list[tuple[float, EndpointState]]:
        prior = self._best_latency(candidates, now)
        return [(self._cost(s, now, prior), s) for s in candidates]

    def _sample(self, pool: Sequence[EndpointState]) -> Sequence[EndpointState]:
        k = self.params.sample_size
        if len(pool) <= k:
            return pool
        return [pool[i] for i in pick_some(len(pool), k, self._rng)]

    def _best_latency(self, sample: Sequence[EndpointState], now: float) -> float | None:
        known = [
            e.latency.value()
            for e in (self._learnt.get(s.name) for s in sample)
            if e is not None and not e.latency.empty
        ]
        return min(known) if known else None

    def observe(
        self, name: str, latency_s: float, failed: bool, now: float, ahead: int = 0
    ) -> None:
        self._used[name] = max(self._used.get(name, now), now)
        self._alive_at = max(self._alive_at, now)
        # The cost is a latency per turn times the turns a new call waits, so each answer is
        # learnt per turn: one that queued behind `ahead` calls says that much less about the
        # endpoint's speed. Otherwise queueing would count twice, in the estimate and in the
        # turns, and a loaded fast endpoint would look slower than an idle slow one.
        parallel = self._parallel.get(name)
        if ahead > 0 and parallel is not None:
            latency_s /= _queued_turns(ahead, parallel)
        self._judge(name, latency_s, failed)
        learnt = self._learnt.get(name)
        if learnt is None:
            p = self.params
            learnt = self._learnt[name] = _Learnt(
                DecayingAverage(p.decay_s), DecayingAverage(p.error_decay_s)
            )
        learnt.errors.add(1.0 if failed else 0.0, now)
        if not failed:  # a fast failure says nothing about how fast a success would be
            self._add_latency(learnt.latency, latency_s, now)

    def _add_latency(self, avg: DecayingAverage, sample: float, now: float) -> None:
        # Rising faster than falling makes a slowdown visible within a fraction of a second.
        # Both moves are weighted by elapsed time, not per sample, so a busy endpoint's
        # estimate is not pushed towards its tail more than a quiet one's.
        current = avg.value(sample)
        if sample <= current:
            avg.add(sample, now)
            return
        w = math.exp(-max(now - avg.last_update, 0.0) / self.params.rise_s)
        avg.jump_to(current * w + sample * (1.0 - w), now)

    def cost(self, state: EndpointState, now: float) -> float:
        return self._cost(state, now, None)

    def _cost(self, state: EndpointState, now: float, prior: float | None) -> float:
        p = self.params
        learnt = self._learnt.get(state.name)
        outstanding = state.stats.in_flight + state.stats.queued
        latency = self._overdue(
            state, self._latency(learnt, now, prior, state.stats.in_flight > 0), now
        )
        cost = latency * _queued_turns(outstanding, self._workers(state))
        cost *= 1.0 + (outstanding / p.concurrency_hint) ** p.penalty_exponent
        if learnt is not None:
            cost *= 1.0 + p.error_weight * learnt.errors.value_towards(0.0, now)
        return cost * (1.0 + p.hint_weight * state.stats.health_penalty(now, p.hint_ttl_s))

    def _overdue(self, state: EndpointState, latency: float, now: float) -> float:
        # A slowdown shows only when a slow answer returns; until then, more calls would join
        # the ones stuck. Silence much longer than expected is the earlier sign.
        # Only silence beyond the router's own counts: when no endpoint has been heard from
        # for as long, and no timer proved the loop alive, the router's loop (or the machine)
        # may have stalled, and an idle endpoint must not look better than busy ones for it.
        stats = state.stats
        if not stats.in_flight:  # nothing outstanding, nothing overdue (the common case)
            return latency
        silent = stats.silent_for(now) - max(now - self._alive_at, 0.0)
        return silent if silent > self.params.silence_factor * latency else latency

    def _latency(
        self, learnt: _Learnt | None, now: float, prior: float | None, pending: bool
    ) -> float:
        if learnt is None or learnt.latency.empty:
            # As Finagle: unknown and already tried looks costly until its answer shows how
            # fast it is, so that a new endpoint gets one request at a time, not a burst.
            if pending:
                return UNKNOWN_PENALTY
            return prior if prior is not None else 0.0
        raw = learnt.latency.value()
        # An answer on its way is fresh news: fade only when none is pending, so that
        # re-probing a once-slow endpoint costs one request, not a burst of them.
        if prior is None or raw <= prior or pending:
            return raw
        # Knowledge without fresh samples fades towards the best peer's, so that an endpoint
        # avoided after a slowdown gets probed again and its recovery is noticed.
        age = now - learnt.latency.last_update
        return prior + (raw - prior) * math.exp(-max(age, 0.0) / self.params.stale_s)

    def tick(self, now: float) -> None:
        self._alive_at = max(self._alive_at, now)

    def forget(self, name: str) -> None:
        self._learnt.pop(name, None)
        self._used.pop(name, None)
        self._probe_wait.pop(name, None)
        self._probing.discard(name)
        self._parallel.pop(name, None)


def _queued_turns(outstanding: int, parallel: float) -> float:
    """Latency of a new request in units of one service time: 1 while a worker is free, then
    one more turn for every ``parallel`` requests ahead of it (servers with that many workers).
    """
    workers = parallel if parallel > 1.0 else 1.0
    ahead = outstanding + 1.0 - workers  # comparisons, not max(): this runs in every cost
    return 1.0 + ahead / workers if ahead > 0.0 else 1.0


def make_policy(
    name: str, rng: random.Random | None = None, params: AdaptiveParams | None = None
) -> Policy:
    """Build a policy by name: round_robin, least_request, peak_ewma or adaptive."""
    if name == "round_robin":
        return RoundRobin()
    if name == "least_request":
        return LeastRequest(rng)
    if name == "peak_ewma":
        return PeakEwma(rng)
    if name == "adaptive":
        return Adaptive(rng, params)
    raise UnknownPolicy(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
