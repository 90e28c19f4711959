"""The simulator: reproducible windows, realistic cycles, and recorded incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from monitoring.sources.simulator import INCIDENT_KINDS, simulate

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)


def test_simulate_same_window_gives_same_samples() -> None:
    first = simulate(MONDAY, MONDAY + timedelta(hours=3))
    second = simulate(MONDAY, MONDAY + timedelta(hours=3))
    assert first.samples == second.samples


def test_simulate_overlapping_windows_agree_on_shared_minutes() -> None:
    whole = simulate(MONDAY, MONDAY + timedelta(hours=4), services=["api"]).samples
    later = simulate(
        MONDAY + timedelta(hours=2), MONDAY + timedelta(hours=4), services=["api"]
    ).samples
    assert whole[120:] == later


def test_simulate_traffic_follows_daily_cycle() -> None:
    day = simulate(
        MONDAY, MONDAY + timedelta(days=1), services=["api"], incidents_per_day=0
    ).samples
    requests = np.array([s.request_count for s in day])
    night, afternoon = requests[3 * 60 : 4 * 60].mean(), requests[15 * 60 : 16 * 60].mean()
    assert afternoon > 1.3 * night


def test_simulate_weekend_is_quieter_than_weekday() -> None:
    week = simulate(
        MONDAY, MONDAY + timedelta(days=7), services=["api"], incidents_per_day=0
    ).samples
    requests = np.array([s.request_count for s in week]).reshape(7, -1).mean(axis=1)
    assert requests[5:].mean() < 0.8 * requests[:5].mean()


def test_simulate_records_incidents_that_show_in_the_metrics() -> None:
    window = simulate(
        MONDAY, MONDAY + timedelta(days=14), services=["api", "db"], incidents_per_day=1.5
    )
    assert {incident.kind for incident in window.incidents} == set(INCIDENT_KINDS)
    leak = next(i for i in window.incidents if i.kind == "memory_leak")
    memory = {s.timestamp: s.memory_usage for s in window.samples if s.service == leak.service}
    assert memory[leak.end - timedelta(minutes=1)] > memory[leak.start] + 20


def test_simulate_correlates_cpu_with_traffic() -> None:
    day = simulate(
        MONDAY, MONDAY + timedelta(days=1), services=["api"], incidents_per_day=0
    ).samples
    cpu = [s.cpu_usage for s in day]
    requests = [s.request_count for s in day]
    assert np.corrcoef(cpu, requests)[0, 1] > 0.7
