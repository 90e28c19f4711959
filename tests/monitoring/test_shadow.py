"""The shadow verdict: a paired, one-sided test on the same requests' errors, never a guess."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.shadow import judge

RNG = np.random.default_rng(11)
CHAMPION = RNG.uniform(0.05, 0.3, 400)


def _judge(champion: np.ndarray, challenger: np.ndarray, max_labelled: int = 1000):  # type: ignore[no-untyped-def]
    return judge(champion, challenger, min_labelled=50, max_labelled=max_labelled, alpha=0.05)


def test_nothing_is_judged_before_the_minimum_of_labelled_requests() -> None:
    verdict = _judge(CHAMPION[:49], CHAMPION[:49] / 10)
    assert verdict.decision == "waiting" and verdict.labelled == 49 and verdict.p_better is None


def test_a_challenger_with_smaller_errors_on_the_same_requests_is_promoted() -> None:
    verdict = _judge(CHAMPION, CHAMPION * 0.8 + RNG.normal(0, 0.005, 400))
    assert verdict.decision == "promote" and verdict.p_better < 0.05
    assert verdict.challenger_mae < verdict.champion_mae


def test_a_challenger_with_larger_errors_is_rejected() -> None:
    verdict = _judge(CHAMPION, CHAMPION * 1.3)
    assert verdict.decision == "reject" and verdict.p_worse < 0.05


def test_no_difference_keeps_it_running_until_the_maximum_then_rejects_it() -> None:
    noise = RNG.normal(0, 0.02, 400)
    same = np.abs(CHAMPION + noise)
    twin = np.abs(CHAMPION - noise)  # as often better as worse
    assert _judge(same, twin).decision == "running"
    assert _judge(same, twin, max_labelled=400).decision == "reject"


def test_identical_errors_are_no_evidence_either_way() -> None:
    verdict = _judge(CHAMPION, CHAMPION.copy())
    assert verdict.decision == "running" and verdict.p_better == verdict.p_worse == 1.0


def test_the_evidence_reads_as_version_tags() -> None:
    tags = _judge(CHAMPION, CHAMPION * 0.8).evidence()
    assert tags["decision"] == "promote" and float(tags["p_better"]) < 0.05
    assert set(tags) == {
        "decision", "labelled", "champion_mae", "challenger_mae", "p_better", "p_worse", "reason",
    }  # fmt: skip


def test_unpaired_errors_are_refused() -> None:
    with pytest.raises(ValueError, match="400 champion errors but 10"):
        _judge(CHAMPION, CHAMPION[:10])
