"""Input drift, pure: the reference profile of training inputs, and PSI of live rows against it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring import drift

RNG = np.random.default_rng(3)
TRAINING = pd.DataFrame(
    {"latency": RNG.lognormal(4, 0.5, 5000), "cpu": RNG.uniform(10, 60, 5000), "flat": 1.0}
)


def _like_training(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"latency": rng.lognormal(4, 0.5, n), "cpu": rng.uniform(10, 60, n), "flat": 1.0}
    )


def test_the_profile_holds_a_tenth_of_the_training_rows_in_each_bin_and_survives_json() -> None:
    profile = json.loads(json.dumps(drift.profile_of(TRAINING, ["latency", "cpu"])))
    latency = drift.feature_profiles(profile)["latency"]
    assert profile["rows"] == 5000 and len(latency.edges) == 9
    assert latency.shares == pytest.approx([0.1] * 10, abs=0.002)


def test_live_rows_from_the_training_distribution_are_stable() -> None:
    profile = drift.profile_of(TRAINING, ["latency", "cpu", "flat"])
    found = drift.check(profile, _like_training(300, seed=11), threshold=0.25)
    assert not found.drifted and max(found.psi.values()) < 0.1


def test_a_shift_of_one_feature_drifts_and_names_it() -> None:
    profile = drift.profile_of(TRAINING, ["latency", "cpu"])
    live = _like_training(300, seed=12).assign(latency=lambda f: f["latency"] * 3)
    found = drift.check(profile, live, threshold=0.25)
    assert found.drifted and found.worst == "latency" and found.psi["cpu"] < 0.1
    evidence = found.evidence()
    assert evidence["drifted"] and evidence["worst_feature"] == "latency"
    assert evidence["rows"] == 300 and evidence["threshold"] == 0.25


def test_a_constant_feature_that_starts_to_move_drifts() -> None:
    profile = drift.profile_of(TRAINING, ["flat"])
    assert drift.check(profile, _like_training(200, 4).assign(flat=5.0), 0.25).drifted


def test_features_the_live_rows_lack_are_left_out() -> None:
    profile = drift.profile_of(TRAINING, ["latency", "cpu"])
    assert set(drift.check(profile, _like_training(100, 5)[["cpu"]], 0.25).psi) == {"cpu"}


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"features": {"cpu": {"edges": [1.0]}}},
        {"features": {"cpu": {"edges": [1], "shares": [1]}}},
    ],
)
def test_a_malformed_profile_is_refused_with_the_reason(bad: dict) -> None:
    with pytest.raises(ValueError, match="not a reference profile"):
        drift.feature_profiles(bad)
