"""Alerts: conditions become alerts, recorded per sink, delivered to a real Alertmanager and a
real HTTP webhook receiver, retried while a sink is down, and never duplicated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.alerts import outbox, pipeline, rules
from monitoring.alerts.model import Alert, fingerprint, labels
from monitoring.assess.failure import FailureRisk, RiskFactor
from monitoring.assess.insights import Assessment
from monitoring.config import AlertSettings, OrchestratorSettings
from monitoring.healing.actions import Action, ActionKind, ActionState
from monitoring.healing.policy import ModelHealth
from monitoring.orchestrator import cycle
from monitoring.store import migrate
from monitoring.store.engine import open_store
from monitoring.store.orchestrator import SqlActionRepository
from monitoring.store.tables import AlertRow, AnomalyRow, TrainingRun
from tests.support.alertmanager import Receiver, active_alerts, alertmanager
from tests.support.migrations import store_at
from tests.support.net import free_port


@pytest.fixture(scope="module")
def am_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with alertmanager(tmp_path_factory.mktemp("alertmanager")) as url:
        yield url


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_store(f"sqlite:///{tmp_path / 'store.db'}")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def sinks(am: str | None = None, hook: str | None = None, **knobs: float) -> AlertSettings:
    return AlertSettings(alertmanager_url=am, alert_webhook_url=hook, **knobs)  # type: ignore[arg-type]


def add_anomaly(
    engine: Engine, service: str, at: datetime, score: float = 0.98, replica: str = ""
) -> int:
    with Session(engine) as session, session.begin():
        row = AnomalyRow(
            service=service,
            replica=replica,
            metrics=["network_latency", "error_rate"],
            start=at - timedelta(minutes=10),
            end=at - timedelta(minutes=1),
            score=score,
            severity="high",
            state="open",
            created_at=at,
            updated_at=at,
        )
        session.add(row)
        session.flush()
        return row.id


def close_anomaly(engine: Engine, anomaly_id: int) -> datetime:
    with Session(engine) as session, session.begin():
        row = session.get(AnomalyRow, anomaly_id)
        assert row is not None
        row.state = "closed"
        return row.end


def deliveries(engine: Engine) -> list[outbox.Delivery]:
    return [d for _alert, found in outbox.listing(engine) for d in found]


# --- the rules, pure ----------------------------------------------------------------------


def test_evaluate_failure_risk_fires_at_threshold_and_clears_below() -> None:
    at = now()
    factor = RiskFactor("error_rate", 4.2, 1.8, "error rate 4.2% near its 5% objective")
    high = rules.risk_alert("checkout", FailureRisk(0.91, 6, (factor,)), 0.8, 30, at)
    low = rules.risk_alert("checkout", FailureRisk(0.2, 6, (factor,)), 0.8, 30, at)
    ((key, alert),) = high
    assert alert is not None and alert.labels["alertname"] == "HighFailureRisk"
    assert "0.910 >= threshold 0.80" in alert.annotations["description"]
    assert low == [(key, None)]
    assert rules.risk_alert("checkout", None, 0.8, 30, at) == []  # unknown: not evaluated


def test_evaluate_degraded_model_says_the_error_ratio() -> None:
    health = ModelHealth("neuroweaver", "3", error=0.3, baseline_error=0.1, previous_version="2")
    ((_, alert),) = rules.model_alert(health, 1.25, now())
    assert alert is not None and alert.labels["alertname"] == "ModelDegraded"
    assert "3.00x" in alert.annotations["description"]


def test_evaluate_trainings_alerts_failed_and_unpromoted_only() -> None:
    at, ttl = now(), timedelta(hours=1)
    failed = rules.TrainingFact("r1", "neuroweaver", True, None, "no samples", at, None)
    kept = rules.TrainingFact("r2", "neuroweaver", False, "4", "test RMSE 0.2 >= 0.1", at, False)
    promoted = rules.TrainingFact("r3", "neuroweaver", False, "5", "better", at, True)
    names = [
        a.labels["alertname"] for f in (failed, kept) for _, a in rules.training_alert(f, ttl) if a
    ]
    assert names == ["TrainingFailed", "TrainingNotPromoted"]
    assert rules.training_alert(promoted, ttl) == [("training:r3", None)]


def test_evaluate_healing_action_names_the_replica_and_skips_rate_limited() -> None:
    at = now()
    drain = Action(
        "a1",
        ActionKind.DRAIN_ENDPOINT,
        "checkout",
        "checkout-2",
        "errors 40%",
        at,
        params={"endpoint": "checkout-2"},
        state=ActionState.SUCCEEDED,
        result="ok",
    )
    ((_, alert),) = rules.action_alert(drain, timedelta(hours=1))
    assert alert is not None and alert.labels["replica"] == "checkout-2"
    assert alert.labels["severity"] == "info" and alert.ends_at == at + timedelta(hours=1)
    drain.state = ActionState.RATE_LIMITED
    assert rules.action_alert(drain, timedelta(hours=1)) == []


def test_label_set_omits_an_empty_replica() -> None:
    assert "replica" not in labels("ServiceAnomaly", "checkout", "warning", "")
    assert fingerprint({"b": "1", "a": "2"}) == fingerprint({"a": "2", "b": "1"})


# --- the store ----------------------------------------------------------------------------


def test_record_grown_severity_resolves_the_previous_labels(engine: Engine) -> None:
    at = now()
    names = outbox.Sinks(["alertmanager"])
    warn = Alert(labels("ServiceAnomaly", "s", "warning"), {"summary": "x"}, at, key="anomaly:s:")
    crit = Alert(labels("ServiceAnomaly", "s", "critical"), {"summary": "x"}, at, key="anomaly:s:")
    outbox.record(engine, [(warn.key, warn)], names, at)
    outbox.record(engine, [(crit.key, crit)], names, at + timedelta(minutes=5))
    with Session(engine) as session:
        ends = {r.labels["severity"]: r.ends_at for r in session.query(AlertRow)}
    assert ends == {"warning": at + timedelta(minutes=5), "critical": None}


def test_migrate_to_alerts_keeps_existing_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    anomaly = (
        'INSERT INTO anomalies (service, metrics, start, "end", score, severity, state,'
        " created_at, updated_at) VALUES ('kept', '[\"cpu_usage\"]', :at, :at, 0.95,"
        " 'medium', 'open', :at, :at)"
    )
    old = store_at(url, "0006", (anomaly, {"at": now()}))
    migrate.upgrade(url)
    facts = pipeline.latest_anomalies(old)
    assert [(f.service, f.open) for f in facts] == [("kept", True)]
    assert outbox.listing(old) == []


# --- delivery to a real Alertmanager and a real webhook -----------------------------------


def test_deliver_anomaly_reaches_alertmanager_with_labels_and_annotations(
    engine: Engine, am_url: str
) -> None:
    add_anomaly(engine, "payments-a", now())
    report = pipeline.run(engine, pipeline.AlertInputs(), sinks(am_url), now())
    assert [(d.sink, d.sent, d.error) for d in report.deliveries] == [("alertmanager", 1, None)]
    (found,) = active_alerts(am_url, service="payments-a")
    assert found["labels"] == {
        "alertname": "ServiceAnomaly",
        "service": "payments-a",
        "severity": "warning",
    }
    assert "network_latency, error_rate" in found["annotations"]["summary"]
    assert "anomaly score 0.980 (high)" in found["annotations"]["description"]
    assert [d.state for d in deliveries(engine)] == ["delivered"]


def test_deliver_a_replicas_anomaly_beside_its_services_as_two_alerts_naming_it(
    engine: Engine, am_url: str
) -> None:
    add_anomaly(engine, "payments-r", now(), replica="payments-r-1")
    add_anomaly(engine, "payments-r", now(), score=0.9)
    pipeline.run(engine, pipeline.AlertInputs(), sinks(am_url), now())
    found = active_alerts(am_url, service="payments-r")
    assert sorted(a["labels"].get("replica", "") for a in found) == ["", "payments-r-1"]
    assert "payments-r replica payments-r-1" in " ".join(a["annotations"]["summary"] for a in found)


def test_clear_anomaly_sends_ends_at_and_alertmanager_resolves_it(
    engine: Engine, am_url: str
) -> None:
    anomaly = add_anomaly(engine, "payments-b", now())
    pipeline.run(engine, pipeline.AlertInputs(), sinks(am_url), now())
    assert len(active_alerts(am_url, service="payments-b")) == 1
    ended = close_anomaly(engine, anomaly)
    pipeline.run(engine, pipeline.AlertInputs(), sinks(am_url), now())
    assert active_alerts(am_url, service="payments-b") == []
    ((alert, _),) = outbox.listing(engine)
    assert alert.ends_at == ended


def test_resend_same_condition_keeps_one_alert(engine: Engine, am_url: str) -> None:
    add_anomaly(engine, "payments-c", now())
    settings = sinks(am_url, alert_resend_minutes=0.001)  # every run refreshes the lease
    first = pipeline.run(engine, pipeline.AlertInputs(), settings, now())
    again = pipeline.run(engine, pipeline.AlertInputs(), settings, now() + timedelta(seconds=1))
    assert (first.deliveries[0].sent, again.deliveries[0].sent) == (1, 1)
    assert len(active_alerts(am_url, service="payments-c")) == 1
    assert len(outbox.listing(engine)) == 1


def test_deliver_while_alertmanager_down_records_failure_and_retries_once_up(
    engine: Engine, tmp_path: Path
) -> None:
    port, start = free_port(), now()
    settings = sinks(f"http://127.0.0.1:{port}", alert_retry_initial_s=30)
    add_anomaly(engine, "payments-d", start)
    down = pipeline.run(engine, pipeline.AlertInputs(), settings, start)
    assert down.deliveries[0].error and "ConnectError" in down.deliveries[0].error
    (failed,) = deliveries(engine)
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.next_attempt_at == start + timedelta(seconds=30)
    with alertmanager(tmp_path / "am", port) as url:
        early = pipeline.run(engine, pipeline.AlertInputs(), settings, start + timedelta(seconds=5))
        assert early.deliveries[0].sent == 0  # backing off: not due yet
        later = pipeline.run(
            engine, pipeline.AlertInputs(), settings, start + timedelta(seconds=31)
        )
        assert later.deliveries[0].sent == 1
        assert len(active_alerts(url, service="payments-d")) == 1
    (done,) = deliveries(engine)
    assert (done.state, done.attempts, done.last_error) == ("delivered", 2, None)


def test_deliver_to_webhook_posts_versioned_json_once(engine: Engine) -> None:
    add_anomaly(engine, "payments-e", now())
    with Receiver() as receiver:
        pipeline.run(engine, pipeline.AlertInputs(), sinks(hook=receiver.url), now())
        pipeline.run(engine, pipeline.AlertInputs(), sinks(hook=receiver.url), now())
    (body,) = receiver.bodies  # unchanged the second time: not sent again
    assert body["version"] == "1"
    (alert,) = body["alerts"]
    assert alert["labels"]["service"] == "payments-e" and alert["status"] == "firing"
    assert {"startsAt", "endsAt", "annotations", "fingerprint"} <= set(alert)


# --- the orchestration cycle --------------------------------------------------------------


def test_run_cycle_with_alertmanager_down_still_completes_and_records_failure(
    engine: Engine,
) -> None:
    at = now()
    add_anomaly(engine, "payments-f", at)
    settings = sinks(f"http://127.0.0.1:{free_port()}")
    ctx = cycle.OrchestratorContext(engine, OrchestratorSettings(), alerting=settings)
    report = cycle.run_cycle(ctx, now=at)
    assert report.alerts is not None and report.alerts.deliveries[0].error
    assert [d.state for d in deliveries(engine)] == ["failed"]


def test_raise_alerts_for_assessed_risk_training_and_healing_action(engine: Engine) -> None:
    at = now()
    with Session(engine) as session, session.begin():
        session.add(
            TrainingRun(
                id="run-1",
                state="COMPLETED",
                model_version="7",
                message="kept",
                started_at=at,
                updated_at=at,
            )
        )
    SqlActionRepository(engine).add(
        Action(
            "a2",
            ActionKind.SCALING_WEBHOOK,
            "checkout",
            "webhook",
            "cpu 95%",
            at,
            state=ActionState.FAILED,
            result="webhook answered 500",
        )
    )
    risky = Assessment("checkout", at, 60, risk=FailureRisk(0.9, 6, ()))
    inputs = pipeline.AlertInputs([risky], promoted_of={"7": False}.get)
    report = pipeline.run(engine, inputs, sinks(), at)
    names = sorted(a.labels["alertname"] for a, _ in outbox.listing(engine))
    assert names == ["HealingAction", "HighFailureRisk", "TrainingNotPromoted"]
    assert report.queued == 3 and report.deliveries == []
