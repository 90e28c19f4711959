"""The learned failure risk: features from the past only, labels from events, a JSON state that
answers as scikit-learn does, and a judgement beside the hand-set rule on the same test days."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from monitoring.assess import failure_alarms, failure_model
from monitoring.assess.failure_model import FEATURES, FittedRisk, RiskTrainingError
from monitoring.assess.failure_training import Trained, matrix, train
from monitoring.samples import METRICS
from tests.support.histories import T0, simulated


def minutes(n: int, **values: float) -> pd.DataFrame:
    index = pd.date_range(T0, periods=n, freq="1min")
    base = {"cpu_usage": 30.0, "memory_usage": 50.0, "network_latency": 80.0}
    base |= {"error_rate": 0.2, "request_count": 500.0} | values
    return pd.DataFrame({m: np.full(n, base[m]) for m in METRICS}, index=index)


@pytest.fixture(scope="module")
def trained() -> Trained:
    return train(simulated(3), horizon=30)


def test_labels_mark_rows_whose_horizon_reaches_an_event() -> None:
    index = pd.date_range(T0, periods=120, freq="1min")
    event = [(T0 + pd.Timedelta(minutes=60), T0 + pd.Timedelta(minutes=70))]
    y = failure_model.labels(index, event, horizon=30)
    assert y[29] == 0 and y[30] == 1  # 30 minutes ahead reaches minute 60
    assert y[65] == 1 and y[70] == 0  # under way, then over


def test_breaches_merge_minutes_closer_than_five() -> None:
    frame = minutes(60)
    frame.iloc[[10, 12, 40], frame.columns.get_loc("error_rate")] = 5.0
    found = failure_model.breaches(frame)
    assert [(s.minute, e.minute) for s, e in found] == [(10, 13), (40, 41)]


def test_features_at_a_row_use_no_future_rows() -> None:
    frame = minutes(200)
    later = frame.copy()
    later.iloc[150:, later.columns.get_loc("network_latency")] = 900.0
    early = failure_model.features(frame, 30).iloc[:150]
    assert early.equals(failure_model.features(later, 30).iloc[:150])


def test_features_project_a_rising_latency_against_its_objective() -> None:
    frame = minutes(120)
    frame["network_latency"] = np.linspace(100, 220, 120)
    row = failure_model.features(frame, 30).iloc[-1]
    assert row["network_latency_rise"] > 0
    # 250.3 ms is just past the objective: 1 at the objective, 0 at half of it.
    assert row["network_latency_projected"] == pytest.approx((250.3 / 250 - 0.5) / 0.5, rel=0.01)
    assert row["memory_usage_level"] == 0.0  # 50% memory is far below 80% of its 90%


def test_json_state_answers_as_the_calibrated_scikit_learn_classifier() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(FEATURES)))
    y = (x[:, 1] + 0.5 * rng.normal(size=2000) > 1).astype(int)
    state, calibrated = failure_model.fit(x, y, 30, "observed")
    again = FittedRisk.from_dict(json.loads(json.dumps(state.to_dict())))
    probe = rng.normal(size=(300, len(FEATURES)))
    assert np.allclose(again.predict(probe), calibrated.predict_proba(probe)[:, 1])


def test_fit_refuses_history_without_any_event() -> None:
    x = np.zeros((100, len(FEATURES)))
    with pytest.raises(RiskTrainingError, match="no breach or incident"):
        failure_model.fit(x, np.zeros(100, dtype=int), 30, "observed")


def test_train_judges_learned_and_hand_set_rule_on_the_same_test_rows(trained: Trained) -> None:
    test = trained.part("test")
    assert trained.candidate.rows == trained.rule.rows == len(test)
    assert test["timestamp"].min() >= trained.split.test_start
    assert trained.part("train")["timestamp"].max() < trained.split.validation_start
    assert 0 < trained.state.threshold < 1
    assert trained.candidate.events == trained.rule.events > 0
    risk = trained.state.predict(matrix(test))
    assert np.all((risk >= 0) & (risk <= 1))


def test_decide_keeps_a_version_that_does_not_beat_the_hand_set_rule(trained: Trained) -> None:
    worse = failure_alarms.AlarmScore(**{**trained.rule.__dict__, "brier": 0.9})
    decision = failure_alarms.decide(worse, trained.rule, None, None)
    assert not decision.promoted and "hand-set rule" in decision.reason


def test_decide_promotes_only_past_the_champion_on_the_same_days(trained: Trained) -> None:
    same = failure_alarms.decide(trained.candidate, trained.candidate, trained.candidate, "1")
    assert not same.promoted  # a tie is no improvement


def test_risk_now_explains_the_learned_risk_by_its_features(trained: Trained) -> None:
    frame = minutes(400)
    risk, factors = failure_model.risk_now(trained.state, frame, None, 0.0)
    assert 0 <= risk <= 1
    assert {f.name for f in factors} == set(FEATURES)
    assert datetime.fromisoformat(trained.state.fitted_at) <= datetime.now(UTC)
