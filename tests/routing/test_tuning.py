"""Tuning the adaptive policy: search on the earlier calls, judge on the later ones, and refuse
a stored state that is not a valid set of knobs."""

from __future__ import annotations

import math
import random

import pytest

from routing import AdaptiveParams, Observation, tuning

CHEAP = {"p50_ms": 2.0, "p99_ms": 10.0, "p999_ms": 20.0, "success_rate": 1.0}
DEAR = {"p50_ms": 2.0, "p99_ms": 30.0, "p999_ms": 60.0, "success_rate": 1.0}


def _calls(count: int, endpoint: str = "a", start: float = 0.0) -> list[Observation]:
    rng = random.Random(count)
    return [
        Observation(start + i * 0.01, endpoint, 0.002 * rng.lognormvariate(0, 0.3), False)
        for i in range(count)
    ]


def test_split_searches_on_the_earlier_calls_and_validates_on_the_later_ones() -> None:
    early, late = _calls(70, "early"), _calls(30, "late", start=10.0)
    parts = tuning.split(late + early)  # the order given does not matter, the time does
    assert (parts.search_calls, parts.validation_calls) == (70, 30)
    assert [e.name for e in parts.search.endpoints] == ["early"]
    assert [e.name for e in parts.validation.endpoints] == ["late"]


def test_split_refuses_too_few_successful_calls() -> None:
    failed = [Observation(i * 0.01, "a", 0.001, True) for i in range(100)]
    with pytest.raises(tuning.NothingToReplay, match="29 successful calls observed"):
        tuning.split(failed + _calls(tuning.MIN_OBSERVATIONS - 1))


def test_split_refuses_a_validation_part_with_too_few_successful_calls() -> None:
    calls = _calls(60) + [Observation(60 + i, "a", 0.001, True) for i in range(40)]
    with pytest.raises(tuning.NothingToReplay, match="one part of the split"):
        tuning.split(calls)


def test_a_candidate_cheaper_than_the_defaults_and_the_champion_is_promoted() -> None:
    judged = tuning.decide(CHEAP, DEAR, DEAR)
    assert judged.promoted
    assert judged.reason == "better than the defaults and the champion on the validation replay"
    assert judged.baseline() == DEAR


def test_a_candidate_that_only_beats_the_champion_is_not_promoted() -> None:
    judged = tuning.decide(DEAR, CHEAP, {**DEAR, "p99_ms": 50.0})
    assert not judged.promoted
    assert judged.reason == "no better than the defaults on the validation replay"


def test_a_tie_is_not_a_promotion() -> None:
    assert not tuning.decide(CHEAP, CHEAP, None).promoted


def test_a_lost_message_costs_more_than_any_plausible_tail() -> None:
    lossy = {**CHEAP, "success_rate": 0.99}
    assert tuning.cost(lossy) > tuning.cost({**CHEAP, "p99_ms": 90.0})
    assert tuning.cost({**CHEAP, "p99_ms": math.nan}) >= 1e7


def test_judge_replays_all_three_on_the_validation_part() -> None:
    parts = tuning.split(_calls(40, "a") + _calls(40, "b", start=0.005))
    judged = tuning.judge(parts.validation, AdaptiveParams(), AdaptiveParams())
    assert judged.candidate == judged.default == judged.champion
    assert judged.candidate["success_rate"] == 1.0
    assert not judged.promoted


def test_a_stored_state_round_trips_to_the_same_knobs() -> None:
    params = AdaptiveParams(decay_s=2.5, sample_size=4, tie_share=0.3)
    assert tuning.params_from_state(tuning.state_of(params)) == params


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decay_s": None}, "decay_s must be a finite number"),
        ({"decay_s": float("nan")}, "decay_s must be a finite number"),
        ({"sample_size": True}, "sample_size must be a finite number"),
        ({"tie_share": "0.2"}, "tie_share must be a finite number"),
        ({"sample_size": 1}, "sample_size must be at least 2"),
    ],
)
def test_a_corrupt_state_is_refused(change: dict[str, object], message: str) -> None:
    state = tuning.state_of(AdaptiveParams()) | change
    with pytest.raises(ValueError, match=message):
        tuning.params_from_state(state)


def test_a_state_missing_a_searched_knob_is_refused() -> None:
    state = tuning.state_of(AdaptiveParams())
    del state["rise_s"]
    with pytest.raises(ValueError, match="lacks rise_s"):
        tuning.params_from_state(state)
