"""Tuning the adaptive policy, the pure part: the observed calls split into a part to search on
and a later part to judge on, each replayed on a virtual clock (routing.simulation), and the
judgement of a candidate beside the defaults and the champion on the part it never saw.

The search itself (Optuna) and its record (MLflow) are the edges' (flows/train_relaycore.py);
`suggest` only asks a trial-like object for values.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing.policies import AdaptiveParams
from routing.record import Observation
from routing.simulation import (
    SimEndpoint,
    SimResult,
    endpoints_from_observations,
    poisson_arrivals,
    simulate,
)

MIN_OBSERVATIONS = 30  # successful calls, over both parts
MIN_PART = 10  # successful calls in each part
SEARCH_SHARE = 0.7
WORKERS = 4  # simulated workers per endpoint; the load is scaled to them
LOAD = 0.7  # replayed arrivals at this share of the replayed endpoints' capacity
SEARCHED = (
    "decay_s",
    "rise_s",
    "stale_s",
    "penalty_exponent",
    "concurrency_hint",
    "error_weight",
    "sample_size",
    "silence_factor",
    "probe_s",
    "hold_margin",
    "tie_share",
)


class NothingToReplay(LookupError):
    """Too few successful calls were observed to search and validate (HTTP 409, CLI exit 1)."""


@dataclass(frozen=True)
class Replay:
    endpoints: list[SimEndpoint]
    arrivals: list[tuple[float, int]]


@dataclass(frozen=True)
class Split:
    search: Replay
    validation: Replay
    search_calls: int
    validation_calls: int


def split(
    observations: Sequence[Observation], share: float = SEARCH_SHARE, messages: int = 1500
) -> Split:
    """The earlier `share` of the calls (by time) to search on, the rest to validate on."""
    ordered = sorted(observations, key=lambda o: o.at)
    ok = sum(not o.failed for o in ordered)
    if ok < MIN_OBSERVATIONS:
        raise NothingToReplay(
            f"{ok} successful calls observed; at least {MIN_OBSERVATIONS} are needed to"
            " search on one part and validate on another"
        )
    cut = int(len(ordered) * share)
    head, tail = ordered[:cut], ordered[cut:]
    return Split(
        build_replay(head, messages, seed=0),
        build_replay(tail, messages, seed=1),
        len(head),
        len(tail),
    )


def build_replay(
    observations: Sequence[Observation], messages: int = 1500, seed: int = 0
) -> Replay:
    """Simulated endpoints replaying each one's observed latencies, under Poisson arrivals."""
    ok = [o for o in observations if not o.failed]
    if len(ok) < MIN_PART:
        raise NothingToReplay(
            f"{len(ok)} successful calls in one part of the split; at least {MIN_PART} are needed"
        )
    per_endpoint: dict[str, list[float]] = {}
    for o in ok:
        per_endpoint.setdefault(o.endpoint, []).append(o.latency_s)
    capacity = sum(WORKERS / max(statistics.fmean(v), 1e-6) for v in per_endpoint.values())
    rate = LOAD * capacity
    arrivals = poisson_arrivals(random.Random(seed), lambda t: rate, messages / rate)
    return Replay(endpoints_from_observations(ok, workers=WORKERS), arrivals)


def figures(result: SimResult) -> dict[str, float]:
    return {
        "p50_ms": result.percentile_ms(50),
        "p99_ms": result.percentile_ms(99),
        "p999_ms": result.percentile_ms(99.9),
        "success_rate": result.success_rate(),
    }


def cost(found: Mapping[str, float]) -> float:
    """p99 in ms, with every lost message weighing as much as ten seconds of tail."""
    p99 = found["p99_ms"] if not math.isnan(found["p99_ms"]) else 1e7
    return p99 + (1.0 - found["success_rate"]) * 10_000.0


def evaluate(replay: Replay, params: AdaptiveParams, seed: int = 0) -> dict[str, float]:
    result = simulate(
        replay.endpoints,
        replay.arrivals,
        "adaptive",
        seed=seed,
        params=params,
        max_concurrency=2 * WORKERS,
    )
    return figures(result)


def suggest(trial: Any) -> AdaptiveParams:
    """The searched knobs, asked of an Optuna trial (any object with its suggest_* methods)."""
    return AdaptiveParams(
        decay_s=trial.suggest_float("decay_s", 0.1, 10.0, log=True),
        rise_s=trial.suggest_float("rise_s", 0.02, 2.0, log=True),
        stale_s=trial.suggest_float("stale_s", 1.0, 300.0, log=True),
        penalty_exponent=trial.suggest_float("penalty_exponent", 1.0, 4.0),
        concurrency_hint=trial.suggest_float("concurrency_hint", 1.0, 32.0, log=True),
        error_weight=trial.suggest_float("error_weight", 1.0, 50.0, log=True),
        sample_size=trial.suggest_int("sample_size", 2, 4),
        silence_factor=trial.suggest_float("silence_factor", 1.0, 10.0, log=True),
        probe_s=trial.suggest_float("probe_s", 1.0, 30.0, log=True),
        hold_margin=trial.suggest_float("hold_margin", 1.0, 3.0),
        tie_share=trial.suggest_float("tie_share", 0.0, 0.5),
    )


def state_of(params: AdaptiveParams) -> dict[str, Any]:
    """Every knob, as the registered state stores it."""
    return dataclasses.asdict(params)


def searched(params: AdaptiveParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in SEARCHED}


def params_from_state(state: Mapping[str, Any]) -> AdaptiveParams:
    """A stored state as parameters; ValueError when a knob is missing, not a number or out of
    range, so that a corrupt version is refused rather than routed with."""
    known = {f.name: f for f in dataclasses.fields(AdaptiveParams)}
    missing = sorted(set(SEARCHED) - set(state))
    if missing:
        raise ValueError(f"the policy state lacks {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name, value in state.items():
        if name not in known:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a finite number, not {value!r}")
        values[name] = int(value) if known[name].type in ("int", int) else float(value)
    return AdaptiveParams(**values)


@dataclass(frozen=True)
class Judgement:
    """The candidate beside the defaults and the champion on the validation part."""

    candidate: dict[str, float]
    default: dict[str, float]
    champion: dict[str, float] | None
    promoted: bool
    reason: str

    def baseline(self) -> dict[str, float]:
        """What runs without the candidate: the champion, else the defaults."""
        return self.champion if self.champion is not None else self.default


def judge(
    validation: Replay, candidate: AdaptiveParams, champion: AdaptiveParams | None
) -> Judgement:
    """The candidate, the defaults and the champion replayed on the validation part, decided."""
    held = None if champion is None else evaluate(validation, champion)
    return decide(evaluate(validation, candidate), evaluate(validation, AdaptiveParams()), held)


def decide(
    candidate: dict[str, float], default: dict[str, float], champion: dict[str, float] | None
) -> Judgement:
    """Promotes only a candidate cheaper than the defaults and than the champion."""
    rivals = {"the defaults": default} | ({} if champion is None else {"the champion": champion})
    worse = [name for name, rival in rivals.items() if cost(candidate) >= cost(rival)]
    if worse:
        reason = f"no better than {' and '.join(worse)} on the validation replay"
    else:
        reason = f"better than {' and '.join(rivals)} on the validation replay"
    return Judgement(candidate, default, champion, not worse, reason)
