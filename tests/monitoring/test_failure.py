"""Failure risk: its factors, its range, and the alarm evaluation against incidents."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.assess.failure import (
    ServiceSignals,
    evaluate_alarms,
    failure_risk,
    risk_series,
    threshold_baseline,
)

FLAT = {"latency": [100.0] * 12, "error_rate": [0.01] * 12, "memory": [0.5] * 12}


def test_risk_healthy_service_is_low() -> None:
    result = failure_risk(ServiceSignals(0.98, FLAT))
    assert 0.0 <= result.risk < 0.1


def test_risk_low_predicted_score_raises_risk_and_leads_factors() -> None:
    result = failure_risk(ServiceSignals(0.2, FLAT))
    assert result.risk > 0.5
    assert result.factors[0].name == "performance_score"


def test_risk_rising_latency_trend_raises_risk() -> None:
    rising = dict(FLAT, latency=list(np.linspace(100, 200, 12)))
    flat = failure_risk(ServiceSignals(0.9, FLAT)).risk
    assert failure_risk(ServiceSignals(0.9, rising)).risk > flat + 0.2


def test_risk_improving_trend_does_not_offset_other_factors() -> None:
    falling = dict(FLAT, memory=list(np.linspace(0.9, 0.1, 12)))
    assert (
        failure_risk(ServiceSignals(0.5, falling)).risk
        == failure_risk(ServiceSignals(0.5, FLAT)).risk
    )


def test_risk_open_anomalies_raise_risk() -> None:
    quiet = failure_risk(ServiceSignals(0.9, FLAT)).risk
    noisy = failure_risk(ServiceSignals(0.9, FLAT, open_anomalies=2, max_anomaly_score=0.95))
    assert noisy.risk > quiet
    assert any(f.name == "open_anomalies" for f in noisy.factors)


def test_risk_stays_in_unit_interval_at_extremes() -> None:
    worst = {k: list(np.linspace(1, 1000, 12)) for k in FLAT}
    result = failure_risk(ServiceSignals(0.0, worst, open_anomalies=9, max_anomaly_score=1.0))
    assert 0.0 <= result.risk <= 1.0


def test_evaluate_alarms_recall_lead_and_false_alarms() -> None:
    index = pd.date_range("2024-01-01", periods=2 * 288, freq="5min")  # two days
    risk = pd.Series(0.1, index=index)
    risk.iloc[100:110] = 0.9  # 30 minutes before incident one
    risk.iloc[400:405] = 0.9  # a false alarm
    incidents = [
        (index[106], index[130]),
        (index[500], index[520]),  # missed
    ]
    result = evaluate_alarms(risk, incidents, threshold=0.5)
    assert result.recall == 0.5
    assert result.mean_lead_minutes == 30.0
    assert result.false_alarms == 1
    assert abs(result.false_alarms_per_day - 1 / (575 * 5 / 1440)) < 1e-9


def test_threshold_baseline_flags_any_breached_metric() -> None:
    frame = pd.DataFrame({"latency": [100, 300, 100], "error_rate": [0.0, 0.0, 0.2]})
    flags = threshold_baseline(frame, {"latency": 250, "error_rate": 0.1})
    assert flags.tolist() == [0.0, 1.0, 1.0]


def test_risk_series_uses_only_trailing_rows() -> None:
    index = pd.date_range("2024-01-01", periods=30, freq="5min")
    frame = pd.DataFrame({"latency": np.r_[np.full(20, 100.0), np.linspace(100, 400, 10)]}, index)
    changed = frame.copy()
    changed.iloc[25:] = 1.0
    assert risk_series(frame).iloc[:25].equals(risk_series(changed).iloc[:25])


def test_risk_projected_objective_breach_raises_risk_before_breach() -> None:
    climbing = dict(FLAT, memory=list(np.linspace(70, 85, 12)))  # still under the 90 limit
    calm = failure_risk(ServiceSignals(None, FLAT, objectives={"memory": 90.0})).risk
    ahead = failure_risk(ServiceSignals(None, climbing, objectives={"memory": 90.0}), 12)
    assert ahead.risk > 0.5 > calm
    assert ahead.factors[0].name == "memory_objective"
