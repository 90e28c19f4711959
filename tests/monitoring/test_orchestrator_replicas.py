"""The cycle per replica on a real SQLite store: each replica's series and the service's own are
detected apart, a fault in one replica drains that one, a surge on all drains none, and scaling
counts the replicas RelayCore has."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.config import OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionResult, ActionState, Mode
from monitoring.healing.policy import EndpointHealth
from monitoring.healing.probe import ProbeReport
from monitoring.orchestrator import arrival
from monitoring.orchestrator import cycle as orchestrator
from monitoring.samples import Sample
from monitoring.store import ingestion
from monitoring.store.engine import open_store
from monitoring.store.orchestrator import AnomalyFilter, find_anomalies, set_cursor
from serving.settings import ServingSettings

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
REPLICAS = ("checkout-0", "checkout-1", "checkout-2")
HOURS = 8
# The detector takes a lasting shift for the new normal within minutes, and an anomaly closes
# after a quiet spell: healing acts on what is open, so the faults began a few minutes ago.
ONSET = NOW - timedelta(minutes=6)
# A short warm-up keeps each test to seconds; the faults are far outside the noise.
SETTINGS = OrchestratorSettings(
    detector_warmup_hours=6,
    detector_first_lookback_hours=1,
    healing_webhook_url="http://127.0.0.1:9/scale",
)


def replica_rows(
    fault: dict[str, dict[str, float]],
    now: datetime = NOW,
    replicas: tuple[str, ...] = REPLICAS,
    service: str = "checkout",
) -> list[Sample]:
    """HOURS of one-minute rows per replica up to `now`, each metric of `fault[replica]` times
    its factor for the last few minutes (from ONSET's distance to NOW)."""
    rng = random.Random(5)
    onset = now - (NOW - ONSET)
    rows = []
    for minute in range(HOURS * 60):
        at = now - timedelta(minutes=HOURS * 60 - minute)
        wave = 1.0 + 0.1 * math.sin(minute / 90.0)
        for name in replicas:
            values = {
                "cpu_usage": 40.0 * wave + rng.gauss(0, 1.5),
                "memory_usage": 50.0 + rng.gauss(0, 0.5),
                "network_latency": 20.0 + rng.gauss(0, 1.0),
                "error_rate": max(0.3 + rng.gauss(0, 0.05), 0.0),
                "request_count": 300.0 * wave + rng.gauss(0, 10),
            }
            if at >= onset:
                for metric, factor in fault.get(name, {}).items():
                    values[metric] = min(
                        values[metric] * factor, 100.0 if "usage" in metric else 1e9
                    )
            rows.append(Sample(service, at, replica=name, **values))
    return rows


@pytest.fixture
def engine(settings: ServingSettings) -> Iterator[Engine]:
    arrival.forget_warm()
    yield open_store(settings.database_url)
    arrival.forget_warm()


def relay(drained: tuple[str, ...] = ()) -> orchestrator.EndpointsOf:
    """RelayCore's view: every replica registered, its figures ordinary (10 ms, no errors)."""

    def endpoints(service: str) -> list[EndpointHealth]:
        if service != "checkout":
            return []
        return [
            EndpointHealth(n, 0.0, n in drained, latency_ms=10.0, url=f"http://127.0.0.1:1/{n}")
            for n in REPLICAS
        ]

    return endpoints


LATENCY_FAULT = {"checkout-0": {"network_latency": 20.0, "error_rate": 10.0}}
SURGE = {n: {"request_count": 3.0, "cpu_usage": 1.9, "network_latency": 2.5} for n in REPLICAS}


def test_detect_arrived_fault_in_one_replica_is_that_replicas_anomaly(engine: Engine) -> None:
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT))
    found = arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    # What is open now is what healing acts on (a one-row blip of noise has closed again).
    still = [a for a in found if a["state"] == "open"]
    assert {a["replica"] for a in still} <= {"checkout-0", None}
    [own] = [a for a in still if a["replica"] == "checkout-0"]
    assert "network_latency" in own["metrics"] and own["start"] >= ONSET.isoformat()
    stored = find_anomalies(engine, AnomalyFilter(service="checkout", state="open"))
    assert {r.replica for r in stored} == {a["replica"] or "" for a in still}


@pytest.mark.parametrize(("min_history", "flagged"), [(10, {"checkout-0"}), (60, set())])
def test_detect_arrived_watches_a_new_replica_from_its_tenth_row(
    engine: Engine, min_history: int, flagged: set[str]
) -> None:
    """Ten clean minutes of a new replica, then its fault: enough history by default."""
    new = [r for r in replica_rows(LATENCY_FAULT) if r.timestamp >= ONSET - timedelta(minutes=10)]
    ingestion.store_batch(engine, new)
    settings = SETTINGS.model_copy(update={"detector_min_history": min_history})
    found = arrival.detect_arrived(engine, ["checkout"], NOW, settings)
    assert {a["replica"] for a in found if a["replica"]} == flagged


def test_detect_arrived_again_finds_nothing_new(engine: Engine) -> None:
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT))
    assert arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    assert arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS) == []


def stored(engine: Engine) -> set[tuple[object, ...]]:
    rows = find_anomalies(engine, AnomalyFilter(service="checkout"))
    return {(r.replica, r.start, r.end, round(r.score, 9), tuple(r.metrics), r.state) for r in rows}


def test_detect_arrived_minute_by_minute_matches_one_pass(engine: Engine) -> None:
    """The warmed detectors kept between calls score exactly what one cold pass over the same
    rows scores: each call feeds only the new minute, and nothing is lost or scored twice."""
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT))
    first = NOW - timedelta(minutes=30)
    for minute in range(30, -1, -1):
        arrival.detect_arrived(engine, ["checkout"], NOW - timedelta(minutes=minute), SETTINGS)
    stepped = stored(engine)

    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM anomalies")
        connection.exec_driver_sql("DELETE FROM detector_cursors")
    arrival.forget_warm()
    with Session(engine) as session, session.begin():
        for replica in ("", *REPLICAS):  # where the stepped run's first call began scoring
            set_cursor(session, "checkout", first - timedelta(hours=1), replica)
    arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    assert stepped and stored(engine) == stepped


def cycle(engine: Engine, drained: tuple[str, ...] = ()) -> orchestrator.CycleReport:
    ctx = orchestrator.OrchestratorContext(
        engine, SETTINGS, endpoints=relay(drained), clock=lambda: NOW
    )
    return orchestrator.run_cycle(ctx, now=NOW, mode=Mode.DRY_RUN)


def test_run_cycle_fault_in_one_of_three_replicas_drains_exactly_that_one(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT))
    report = cycle(engine)
    drains = [a for a in report.actions if a.kind is ActionKind.DRAIN_ENDPOINT]
    assert [a.target for a in drains] == ["checkout-0"]
    assert "checkout-0 on its own evidence: its own anomaly" in drains[0].reason


def test_run_cycle_surge_on_all_three_replicas_drains_none_and_proposes_scaling(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, replica_rows(SURGE))
    report = cycle(engine)
    assert {a["replica"] for a in report.new_anomalies} >= set(REPLICAS)
    assert [a.kind for a in report.actions] == [ActionKind.SCALING_WEBHOOK]
    [scale] = report.actions
    assert scale.reason.startswith("service-wide: 3 of 3 replicas alike")
    assert scale.params["current"] == 3 and scale.params["desired"] >= 4


def test_assess_counts_the_registered_undrained_endpoints_as_current_replicas(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, replica_rows({}))
    report = cycle(engine, drained=("checkout-2",))
    rec = report.assessments[0].recommendation
    assert rec is not None and rec.current_replicas == 2
    assert rec.reasons[0] == (
        "current replicas: 2, the registered, undrained endpoints of checkout in RelayCore"
    )


def test_assess_without_registered_endpoints_takes_the_setting_and_says_so(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, replica_rows({}))
    found = orchestrator.assess_service(engine, "checkout", NOW, None, SETTINGS)
    assert found.recommendation is not None and found.recommendation.current_replicas == 2
    assert found.recommendation.reasons[0] == (
        "current replicas: 2, from SCALING_DEFAULT_REPLICAS: no endpoint of checkout is"
        " registered in RelayCore"
    )


def test_run_cycle_restores_a_drained_replica_once_its_probes_are_healthy(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, replica_rows({}))
    state = {"checkout-0": True}
    answers = {"statuses": (503, 503, 503)}

    def endpoints(service: str) -> list[EndpointHealth]:
        return [
            EndpointHealth(n, 0.0, state.get(n, False), latency_ms=10.0, url=f"http://x/{n}")
            for n in REPLICAS
        ]

    def probe(url: str) -> ProbeReport:
        return ProbeReport(url, answers["statuses"], (9.0, 11.0, 10.0))

    def restore(action: Action) -> ActionResult:
        state[action.params["endpoint"]] = False
        return ActionResult(True, "undrained")

    ctx = orchestrator.OrchestratorContext(
        engine,
        OrchestratorSettings(detector_warmup_hours=6, detector_first_lookback_hours=1),
        endpoints=endpoints,
        probe=probe,
        clock=lambda: NOW,
        executors={ActionKind.RESTORE_ENDPOINT: restore},
    )
    drain = Action(
        "d1", ActionKind.DRAIN_ENDPOINT, "checkout", "checkout-0", "fault", NOW - timedelta(hours=1)
    )
    drain.params, drain.state = {"endpoint": "checkout-0"}, ActionState.SUCCEEDED
    ctx.repository().add(drain)
    still = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.AUTO)
    assert [a.kind for a in still.actions] == [] and state["checkout-0"]
    answers["statuses"] = (200, 200, 200)
    back = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.AUTO)
    [restored] = back.actions
    assert (restored.kind, restored.state) == (ActionKind.RESTORE_ENDPOINT, ActionState.SUCCEEDED)
    assert "probed http://x/checkout-0 3x: status 200, 200, 200, median 10 ms within" in (
        restored.reason
    )
    assert restored.params["probe"]["statuses"] == [200, 200, 200]
    assert not state["checkout-0"]


def test_run_cycle_leaves_a_replica_drained_by_someone_else_alone(engine: Engine) -> None:
    ingestion.store_batch(engine, replica_rows({}))
    probed: list[str] = []
    ctx = orchestrator.OrchestratorContext(
        engine,
        SETTINGS,
        endpoints=relay(drained=("checkout-1",)),
        probe=lambda url: probed.append(url) or ProbeReport(url, (200,), (1.0,)),
        clock=lambda: NOW,
    )
    report = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.DRY_RUN)
    assert not [a for a in report.actions if a.kind is ActionKind.RESTORE_ENDPOINT]
    assert probed == []


def arrival_context(engine: Engine) -> orchestrator.OrchestratorContext:
    return orchestrator.OrchestratorContext(engine, SETTINGS, endpoints=relay(), clock=lambda: NOW)


def test_heal_replicas_on_arrival_drains_the_faulty_replica_without_a_cycle(
    engine: Engine,
) -> None:
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT))
    arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    actions = orchestrator.heal_replicas(arrival_context(engine), ["checkout"], NOW, Mode.DRY_RUN)
    assert [(a.kind, a.target, a.started_by) for a in actions] == [
        (ActionKind.DRAIN_ENDPOINT, "checkout-0", "arrival")
    ]


def test_heal_replicas_on_arrival_leaves_a_surge_to_the_cycle(engine: Engine) -> None:
    ingestion.store_batch(engine, replica_rows(SURGE))
    arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    assert orchestrator.heal_replicas(arrival_context(engine), ["checkout"], NOW) == []


def test_heal_replicas_on_arrival_records_no_rate_limited_repeat(engine: Engine) -> None:
    """Called every minute, a drain it may not repeat yet is left to the cycle to record."""
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT))
    arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    ctx = arrival_context(engine)
    assert len(orchestrator.heal_replicas(ctx, ["checkout"], NOW, Mode.CONFIRM)) == 1
    assert orchestrator.heal_replicas(ctx, ["checkout"], NOW, Mode.CONFIRM) == []
    assert len(ctx.repository().list(service="checkout")) == 1


def test_heal_replicas_surge_seen_first_by_one_replicas_detector_drains_none(
    engine: Engine,
) -> None:
    """Its peers' rows moved alike although their own detectors have not fired yet."""
    ingestion.store_batch(engine, replica_rows(SURGE))
    arrival.detect_arrived(engine, ["checkout"], NOW, SETTINGS)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "DELETE FROM anomalies WHERE replica IN ('checkout-1', 'checkout-2', '')"
        )
    assert orchestrator.replica_anomalies(engine, "checkout").keys() == {"checkout-0"}
    assert orchestrator.heal_replicas(arrival_context(engine), ["checkout"], NOW) == []


def test_run_cycle_leaves_a_drained_replica_that_was_removed_since_alone(engine: Engine) -> None:
    """Scaled in (unregistered) after healing drained it: nothing to probe or restore."""
    ingestion.store_batch(engine, replica_rows({}))
    probed: list[str] = []

    def two(service: str) -> list[EndpointHealth]:
        return [e for e in relay()(service) if e.name != "checkout-2"]

    ctx = orchestrator.OrchestratorContext(
        engine,
        SETTINGS,
        endpoints=two,
        probe=lambda url: probed.append(url) or ProbeReport(url, (200,), (1.0,)),
        clock=lambda: NOW,
    )
    drain = Action("d", ActionKind.DRAIN_ENDPOINT, "checkout", "checkout-2", "x", NOW)
    drain.params = {"endpoint": "checkout-2", "replica": "checkout-2", "url": "http://x/2"}
    drain.state = ActionState.SUCCEEDED
    ctx.repository().add(drain)
    report = orchestrator.run_cycle(ctx, now=NOW, mode=Mode.DRY_RUN)
    assert [a for a in report.actions if a.kind is ActionKind.RESTORE_ENDPOINT] == []
    assert probed == []


def test_heal_replicas_drains_the_fault_though_a_peers_passed_blip_is_still_open(
    engine: Engine,
) -> None:
    """At this minute of the day (CI's, once) the same rows leave checkout-1 a one-row error blip
    from 14 minutes ago, still open in its quiet spell: it is no evidence, so the trouble is
    checkout-0's alone and not service-wide."""
    now = datetime(2026, 12, 3, 11, 47, tzinfo=UTC)
    ingestion.store_batch(engine, replica_rows(LATENCY_FAULT, now=now))
    settings = OrchestratorSettings(healing_webhook_url="http://127.0.0.1:9/scale")
    opened = arrival.detect_arrived(engine, ["checkout"], now, settings)
    assert {a["replica"] for a in opened if a["state"] == "open"} >= {"checkout-0", "checkout-1"}
    ctx = orchestrator.OrchestratorContext(engine, settings, endpoints=relay(), clock=lambda: now)
    actions = orchestrator.heal_replicas(ctx, ["checkout"], now, Mode.DRY_RUN)
    assert [(a.kind, a.target) for a in actions] == [(ActionKind.DRAIN_ENDPOINT, "checkout-0")]
