"""The orchestrator's cycle on a real SQLite store of simulated services with injected incidents."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from monitoring.config import CommandSetting, OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionResult, ActionState, Mode
from monitoring.healing.policy import EndpointHealth
from monitoring.healing.probe import ProbeReport
from monitoring.orchestrator import cycle as orchestrator
from monitoring.sources.simulator import simulate
from monitoring.store import ingestion
from monitoring.store.engine import make_engine
from monitoring.store.orchestrator import AnomalyFilter, SqlActionRepository, find_anomalies
from tests.support.stores import simulated_store

NOW = datetime(2024, 5, 10, tzinfo=UTC)
SERVICES = ("auth", "checkout", "inventory")
DAYS = 4


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four simulated days of three services, with their incidents, built once."""
    path = tmp_path_factory.mktemp("orchestrator") / "seed.db"
    engine, window = simulated_store(path, NOW - timedelta(days=DAYS), NOW, SERVICES)
    ingestion.store_incidents(engine, window.incidents)
    engine.dispose()
    return path


@pytest.fixture
def engine(seeded_db: Path, tmp_path: Path) -> Engine:
    copy = tmp_path / "store.db"
    shutil.copy(seeded_db, copy)
    return make_engine(f"sqlite:///{copy}")


def incidents_after(start: datetime) -> list[tuple[str, datetime, datetime]]:
    window = simulate(NOW - timedelta(days=DAYS), NOW, services=SERVICES)
    return [(i.service, i.start, i.end) for i in window.incidents if i.end > start]


def overlaps(anomaly: dict, incident: tuple[str, datetime, datetime], slack: timedelta) -> bool:
    service, start, end = incident
    a_start, a_end = (
        datetime.fromisoformat(anomaly["start"]),
        datetime.fromisoformat(anomaly["end"]),
    )
    return anomaly["service"] == service and a_start <= end + slack and a_end >= start - slack


def test_detect_all_finds_anomalies_around_injected_incidents(engine: Engine) -> None:
    settings = OrchestratorSettings()
    found = orchestrator.detect_all(engine, SERVICES, NOW, settings)
    truth = incidents_after(NOW - timedelta(hours=settings.detector_first_lookback_hours))
    slack = timedelta(minutes=30)
    detected = [i for i in truth if any(overlaps(a, i, slack) for a in found)]
    true_positive = [a for a in found if any(overlaps(a, i, slack) for i in truth)]
    assert len(detected) >= 0.6 * len(truth)
    assert len(true_positive) >= 0.6 * len(found)


def test_detect_service_twice_scores_only_new_rows(engine: Engine) -> None:
    settings = OrchestratorSettings()
    first = orchestrator.detect_service(engine, "inventory", NOW, settings)
    again = orchestrator.detect_service(engine, "inventory", NOW, settings)
    assert first and again == []
    stored = find_anomalies(engine, AnomalyFilter(service="inventory"))
    assert len(stored) == len(first)


@pytest.mark.slow
def test_detect_service_in_steps_matches_one_pass(engine: Engine) -> None:
    settings = OrchestratorSettings()
    start = NOW - timedelta(hours=settings.detector_first_lookback_hours)
    orchestrator.detect_service(engine, "inventory", start, settings)
    for hour in range(1, 25):
        orchestrator.detect_service(engine, "inventory", start + timedelta(hours=hour), settings)
    stepped = find_anomalies(engine, AnomalyFilter(service="inventory"))
    assert stepped, "the stepped runs found nothing"
    starts = {a.start for a in stepped}
    assert all(start <= s < NOW for s in starts)


def test_run_cycle_dry_run_records_actions_without_executing(engine: Engine) -> None:
    calls: list[Action] = []
    settings = OrchestratorSettings(
        healing_webhook_url="http://127.0.0.1:9/hook",
        scaling_default_replicas=1,
        scaling_target_cpu=5.0,
    )
    ctx = orchestrator.OrchestratorContext(
        engine,
        settings,
        executors={
            ActionKind.SCALING_WEBHOOK: lambda a: calls.append(a) or ActionResult(True, "ok")
        },
    )
    report = orchestrator.run_cycle(ctx, now=NOW)
    assert report.mode is Mode.DRY_RUN
    assert {a.kind for a in report.actions} == {ActionKind.SCALING_WEBHOOK}
    assert all(a.state is ActionState.DRY_RUN for a in report.actions)
    assert calls == []
    stored = SqlActionRepository(engine).list()
    assert {a.id for a in stored} == {a.id for a in report.actions}


def test_run_cycle_auto_records_failed_command_once(engine: Engine) -> None:
    settings = OrchestratorSettings(
        healing_commands={s: CommandSetting(argv=["false"]) for s in SERVICES}
    )
    ctx = orchestrator.OrchestratorContext(engine, settings, clock=lambda: NOW)
    from monitoring.healing.executors import base_executors

    ctx.executors = base_executors(settings)
    first = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.AUTO)
    second = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.AUTO)
    failed = [a for a in first.actions if a.state is ActionState.FAILED]
    assert failed, "auth's open incident should push its risk over the command threshold"
    assert all(a.kind is ActionKind.RUN_COMMAND for a in first.actions)
    assert all("exited 1" in (a.result or "") for a in failed)
    assert second.actions
    assert all(a.state is ActionState.RATE_LIMITED for a in second.actions)


def test_run_cycle_drains_failing_endpoint_then_restores_it_on_its_probes(engine: Engine) -> None:
    registered = {"a": False, "b": False}  # name: drained
    errors = {"a": 0.5, "b": 0.0}
    probes: list[str] = []

    def drain(action: Action) -> ActionResult:
        registered[action.params["endpoint"]] = True
        return ActionResult(True, "drained", {"url": "http://127.0.0.1:1/a", "service": "checkout"})

    def restore(action: Action) -> ActionResult:
        registered[action.params["endpoint"]] = False
        return ActionResult(True, "restored")

    def endpoints(service: str) -> list[EndpointHealth]:
        if service != "checkout":
            return []
        return [
            EndpointHealth(n, errors[n], d, url=f"http://127.0.0.1:1/{n}")
            for n, d in registered.items()
        ]

    def probe(url: str) -> ProbeReport:
        probes.append(url)
        return ProbeReport(url, (200, 200, 200), (3.0, 4.0, 5.0))

    clock = [NOW]
    ctx = orchestrator.OrchestratorContext(
        engine,
        OrchestratorSettings(),
        endpoints=endpoints,
        probe=probe,
        clock=lambda: clock[0],
        executors={ActionKind.DRAIN_ENDPOINT: drain, ActionKind.RESTORE_ENDPOINT: restore},
    )
    drained = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.AUTO)
    assert [(a.kind, a.target, a.state) for a in drained.actions] == [
        (ActionKind.DRAIN_ENDPOINT, "a", ActionState.SUCCEEDED)
    ]
    assert registered["a"] and probes == []
    clock[0] = NOW + timedelta(minutes=5)
    restored = orchestrator.run_cycle(ctx, now=clock[0], mode=Mode.AUTO)
    kinds = [(a.kind, a.target, a.state) for a in restored.actions]
    # Drained, "a" gets no traffic: its probes, not its own metrics, say it may come back.
    assert kinds == [(ActionKind.RESTORE_ENDPOINT, "a", ActionState.SUCCEEDED)]
    assert probes == ["http://127.0.0.1:1/a"] and not registered["a"]
    assert "probed http://127.0.0.1:1/a 3x: status 200, 200, 200" in restored.actions[0].reason


def test_assess_service_with_short_history_says_so(engine: Engine) -> None:
    early = NOW - timedelta(days=DAYS) + timedelta(minutes=5)
    found = orchestrator.assess_service(engine, "auth", early, None, OrchestratorSettings())
    assert found.risk is None and found.recommendation is None
    assert "too little history" in found.problems[0]


def test_assess_service_gives_risk_forecast_and_recommendation(engine: Engine) -> None:
    found = orchestrator.assess_service(
        engine, "checkout", NOW, lambda x: x[:, 0] * 0 + 0.9, OrchestratorSettings()
    )
    assert found.predicted_score == pytest.approx(0.9)
    assert found.risk is not None and 0 <= found.risk.risk <= 1
    assert found.capacity is not None and len(found.capacity.forecast.mean) == 12
    assert found.recommendation is not None and found.recommendation.reasons
