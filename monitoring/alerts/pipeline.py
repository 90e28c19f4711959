"""One alerting run over the store: read the conditions, evaluate the rules, record what
changed, then deliver what is due (new alerts, and retries of failed deliveries).

The orchestration cycle calls `run` after healing, with what it assessed; the store supplies the
rest (anomalies, healing actions, trainings). `promoted_of` reads a training's promotion decision
(the MLflow registry in the flow); without it an unpromoted training raises no alert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.alerts import delivery, outbox, rules
from monitoring.alerts.rules import AnomalyFact, Evaluated, TrainingFact
from monitoring.assess.insights import Assessment
from monitoring.config import AlertSettings
from monitoring.healing.policy import ModelHealth
from monitoring.store.orchestrator import OPEN, SqlActionRepository
from monitoring.store.tables import AnomalyRow, TrainingRun

PromotedOf = Callable[[str], bool | None]


@dataclass(frozen=True)
class AlertInputs:
    """What the cycle knows beyond the store; `model_name` names the trained model."""

    assessments: Sequence[Assessment] = ()
    model: ModelHealth | None = None
    model_name: str = "neuroweaver"
    model_error_ratio: float = 1.25
    risk_horizon_minutes: int = 30
    base_url: str | None = None  # the API, for each alert's generatorURL
    promoted_of: PromotedOf | None = None


@dataclass
class AlertReport:
    queued: int
    deliveries: list[delivery.SinkReport] = field(default_factory=list)


def latest_anomalies(engine: Engine) -> list[AnomalyFact]:
    """The latest anomaly of each service's own series and of each of its replicas: open
    (firing) or closed (so a firing alert resolves)."""
    latest = select(func.max(AnomalyRow.id)).group_by(AnomalyRow.service, AnomalyRow.replica)
    with Session(engine) as session:
        rows = session.scalars(select(AnomalyRow).where(AnomalyRow.id.in_(latest))).all()
        return [_anomaly_fact(r) for r in rows]


def _anomaly_fact(row: AnomalyRow) -> AnomalyFact:
    return AnomalyFact(
        service=row.service,
        replica=row.replica or None,  # a replica's anomaly carries its endpoint name
        metrics=tuple(row.metrics),
        start=row.start,
        end=row.end,
        score=row.score,
        severity=row.severity,
        open=row.state == OPEN,
    )


def recent_trainings(
    engine: Engine, since: datetime, model: str, promoted_of: PromotedOf | None
) -> list[TrainingFact]:
    query = select(TrainingRun).where(
        TrainingRun.updated_at >= since, TrainingRun.state.in_(("FAILED", "COMPLETED"))
    )
    with Session(engine) as session:
        runs = session.scalars(query).all()
        return [_training_fact(r, model, promoted_of) for r in runs]


def _training_fact(run: TrainingRun, model: str, promoted_of: PromotedOf | None) -> TrainingFact:
    failed = run.state == "FAILED"
    promoted = None
    if not failed and run.model_version and promoted_of is not None:
        promoted = promoted_of(run.model_version)
    return TrainingFact(
        run.id, model, failed, run.model_version, run.message or "", run.updated_at, promoted
    )


def evaluate(
    engine: Engine, inputs: AlertInputs, settings: AlertSettings, now: datetime
) -> list[Evaluated]:
    ttl = timedelta(minutes=settings.alert_event_minutes)
    base = inputs.base_url
    found = rules.anomaly_alerts(latest_anomalies(engine), base)
    for a in inputs.assessments:
        # A learned risk alarms at the threshold chosen on its validation days.
        threshold, horizon = settings.alert_risk_threshold, inputs.risk_horizon_minutes
        if a.risk is not None and a.risk.threshold is not None:
            threshold, horizon = a.risk.threshold, a.risk.horizon_steps
        found += rules.risk_alert(
            a.service,
            a.risk,
            threshold,
            horizon,
            now,
            base,
        )
    found += rules.model_alert(inputs.model, inputs.model_error_ratio, now, base)
    for t in recent_trainings(engine, now - ttl, inputs.model_name, inputs.promoted_of):
        found += rules.training_alert(t, ttl, base)
    for action in SqlActionRepository(engine).list(since=now - ttl):
        found += rules.action_alert(action, ttl, base)
    return found


def run(
    engine: Engine,
    inputs: AlertInputs,
    settings: AlertSettings,
    now: datetime,
    post: delivery.Post = delivery.http_post,
) -> AlertReport:
    """Evaluate, record and deliver; a sink that is down is recorded as failed, never raised."""
    evaluated = evaluate(engine, inputs, settings, now)
    queued = outbox.record(engine, evaluated, delivery.outbox_sinks(settings), now)
    return AlertReport(queued, delivery.deliver_all(engine, settings, now, post))


def registry_promoted(model_name: str) -> PromotedOf:
    """A version's promotion decision from the MLflow registry; None when it cannot be read
    (MLflow down, no evidence), so the training is looked at again on the next run."""

    def promoted(version: str) -> bool | None:
        from monitoring.neuroweaver import registry  # MLflow loads only when a training is read

        try:
            evidence = registry.promotion_evidence(model_name, version)
        except Exception:  # the registry being down must not stop the other alerts
            return None
        return None if evidence is None else evidence.promoted

    return promoted
