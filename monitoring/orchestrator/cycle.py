"""The AI Orchestrator's cycle: detect, assess, decide and heal, over the metric store.

`flows/orchestrate.py` runs these steps as Prefect tasks every five minutes; the API runs
`run_cycle` on demand. Everything the cycle talks to (the served model, RelayCore, MLflow, a
webhook, a shell) comes in through `OrchestratorContext`, so it is tested on a real SQLite store
without any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.alerts import pipeline as alert_pipeline
from monitoring.alerts.delivery import Post, http_post
from monitoring.anomaly.tracking import Episode, TrackingConfig, track
from monitoring.assess.capacity_model import FittedForecaster
from monitoring.assess.insights import Assessment, OpenAnomaly, Predictor, assess
from monitoring.config import AlertSettings, OrchestratorSettings, get_settings
from monitoring.healing.actions import Action, ActionKind, ActionResult, ActionState, Executor, Mode
from monitoring.healing.engine import HealingEngine
from monitoring.healing.policy import EndpointHealth, HealingInputs, ModelHealth
from monitoring.store.metrics import read_samples, service_names
from monitoring.store.orchestrator import (
    CLOSED,
    OPEN,
    SqlActionRepository,
    cursors,
    set_cursor,
    severity_of,
    utcnow,
)
from monitoring.store.tables import AnomalyRow

Publish = Callable[[str, dict[str, Any]], object]
EndpointsOf = Callable[[str, float], list[EndpointHealth]]
# The forecaster's whole window (four weekly cycles, so a weekly season can apply); the risk's
# trends need only the last hour of it.
ASSESS_HISTORY = timedelta(days=28)


@dataclass
class OrchestratorContext:
    engine: Engine
    settings: OrchestratorSettings
    predictor: Predictor | None = None
    forecaster: FittedForecaster | None = None
    model: ModelHealth | None = None
    endpoints: EndpointsOf = lambda _service, _score: []
    executors: Mapping[ActionKind, Executor] = field(default_factory=dict)
    publish: Publish = lambda _type, _payload: None
    clock: Callable[[], datetime] = utcnow
    # None: no alerts are raised (docs/alerts.md); `promoted_of` reads a training's decision.
    alerting: AlertSettings | None = None
    promoted_of: alert_pipeline.PromotedOf | None = None
    alert_post: Post = http_post

    def repository(self) -> SqlActionRepository:
        return SqlActionRepository(self.engine)

    def healing(self) -> HealingEngine:
        executors = dict(self.executors)
        restore = executors.get(ActionKind.RESTORE_ENDPOINT)
        if restore is not None:
            executors[ActionKind.RESTORE_ENDPOINT] = restoring(self.repository(), restore)
        return HealingEngine(
            self.repository(), executors, self.settings.healing_policy(), clock=self.clock
        )


@dataclass
class CycleReport:
    at: datetime
    mode: Mode
    new_anomalies: list[dict[str, Any]]
    assessments: list[Assessment]
    actions: list[Action]
    alerts: alert_pipeline.AlertReport | None = None


def describe_anomaly(row: AnomalyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "service": row.service,
        "metrics": list(row.metrics),
        "start": row.start.isoformat(),
        "end": row.end.isoformat(),
        "score": round(row.score, 4),
        "severity": row.severity,
        "state": row.state,
    }


# --- detection ----------------------------------------------------------------------------


def tracking_config(settings: OrchestratorSettings) -> TrackingConfig:
    return TrackingConfig(
        open_score=settings.anomaly_open_score,
        quiet=timedelta(minutes=settings.anomaly_quiet_minutes),
    )


def detect_service(
    engine: Engine, service: str, now: datetime, settings: OrchestratorSettings
) -> list[dict[str, Any]]:
    """Scores the service's new rows, stores what opened, grew or closed; returns the new ones."""
    with Session(engine) as session, session.begin():
        cursor = cursors(session, [service]).get(service)
        first = now - timedelta(hours=settings.detector_first_lookback_hours)
        scored_from = cursor or first
        start = scored_from - timedelta(hours=settings.detector_warmup_hours)
        samples = read_samples(session, start=start, end=now, services=[service])
        open_row = _open_row(session, service)
        episode = None if open_row is None else _episode(open_row)
        result = track(samples, scored_from, episode, tracking_config(settings))
        stored = [_store(session, service, e, open_row) for e in result.episodes]
        if result.scored_until is not None:
            set_cursor(session, service, result.scored_until)
        session.flush()
        return [
            describe_anomaly(row)
            for row, e in zip(stored, result.episodes, strict=True)
            if e.id is None
        ]


def _open_row(session: Session, service: str) -> AnomalyRow | None:
    query = select(AnomalyRow).where(AnomalyRow.service == service, AnomalyRow.state == OPEN)
    return session.scalars(query.order_by(AnomalyRow.start.desc())).first()


def _episode(row: AnomalyRow) -> Episode:
    return Episode(row.start, row.end, row.score, list(row.metrics), id=row.id)


def _store(
    session: Session, service: str, episode: Episode, open_row: AnomalyRow | None
) -> AnomalyRow:
    now = utcnow()
    row = open_row if episode.id is not None and open_row is not None else None
    if row is None:
        row = AnomalyRow(service=service, created_at=now)
        session.add(row)
    row.metrics, row.start, row.end = list(episode.metrics), episode.start, episode.end
    row.score, row.severity = episode.score, severity_of(episode.score)
    row.state, row.updated_at = (CLOSED if episode.closed else OPEN), now
    return row


def detect_all(
    engine: Engine, services: Sequence[str], now: datetime, settings: OrchestratorSettings
) -> list[dict[str, Any]]:
    return [a for s in services for a in detect_service(engine, s, now, settings)]


def open_anomalies(engine: Engine, service: str) -> list[OpenAnomaly]:
    query = select(AnomalyRow).where(AnomalyRow.service == service, AnomalyRow.state == OPEN)
    with Session(engine) as session:
        return [OpenAnomaly(tuple(r.metrics), r.score) for r in session.scalars(query)]


# --- assessment and healing ---------------------------------------------------------------


def assess_service(
    engine: Engine,
    service: str,
    now: datetime,
    predictor: Predictor | None,
    settings: OrchestratorSettings,
    forecaster: FittedForecaster | None = None,
) -> Assessment:
    """One service's assessment; its CPU forecast uses the forecaster's fitted choice if any."""
    with Session(engine) as session:
        samples = read_samples(session, start=now - ASSESS_HISTORY, end=now, services=[service])
    anomalies = open_anomalies(engine, service)
    choice = forecaster.choice_for(service, "cpu_usage") if forecaster else None
    return assess(service, samples, now, anomalies, predictor, settings, choice=choice)


def healing_inputs(
    assessment: Assessment,
    anomalies: Sequence[OpenAnomaly],
    endpoints: EndpointsOf,
    drained: Sequence[str] = (),
) -> HealingInputs:
    """What the policy needs; a drained endpoint is judged by its service's latest error rate."""
    score = max((a.score for a in anomalies), default=0.0)
    live = endpoints(assessment.service, score)
    errors = assessment.health.get("error_rate", 100.0) / 100.0
    names = {e.name for e in live}
    live += [EndpointHealth(n, errors, True, score) for n in drained if n not in names]
    return HealingInputs(
        service=assessment.service,
        endpoints=live,
        risk=None if assessment.risk is None else assessment.risk.risk,
        recommendation=assessment.recommendation,
        anomalies=sorted({m for a in anomalies for m in a.metrics}),
    )


def heal(
    ctx: OrchestratorContext,
    assessments: Sequence[Assessment],
    mode: Mode,
    started_by: str,
) -> list[Action]:
    """Decides per service (and once for the served model) and acts as the mode says."""
    healing = ctx.healing()
    actions: list[Action] = []
    for assessment in assessments:
        anomalies = open_anomalies(ctx.engine, assessment.service)
        drained = drained_endpoints(ctx.repository(), assessment.service)
        inputs = healing_inputs(assessment, anomalies, ctx.endpoints, list(drained))
        actions += healing.run(inputs, mode, started_by)
    if ctx.model is not None:
        actions += healing.run(HealingInputs(ctx.model.name, model=ctx.model), mode, started_by)
    return actions


def known_services(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return service_names(session)


def run_cycle(
    ctx: OrchestratorContext,
    now: datetime | None = None,
    mode: Mode | None = None,
    started_by: str = "orchestrator",
) -> CycleReport:
    """One full cycle: detect and publish, assess every service, then heal."""
    now = (now or ctx.clock()).astimezone(UTC)
    mode = mode or ctx.settings.healing_mode
    services = known_services(ctx.engine)
    new = detect_all(ctx.engine, services, now, ctx.settings)
    for anomaly in new:
        ctx.publish("anomaly", anomaly)
    assessments = [
        assess_service(ctx.engine, s, now, ctx.predictor, ctx.settings, ctx.forecaster)
        for s in services
    ]
    actions = heal(ctx, assessments, mode, started_by)
    report = CycleReport(now, mode, new, assessments, actions)
    report.alerts = alert(ctx, assessments, now)
    return report


def alert(
    ctx: OrchestratorContext, assessments: Sequence[Assessment], now: datetime
) -> alert_pipeline.AlertReport | None:
    """Raises, records and delivers the alerts; a sink that is down is recorded, never raised."""
    if ctx.alerting is None:
        return None
    inputs = alert_pipeline.AlertInputs(
        assessments=assessments,
        model=ctx.model,
        model_name=get_settings().model_name,
        model_error_ratio=ctx.settings.healing_policy().model_error_ratio,
        risk_horizon_minutes=ctx.settings.risk_horizon_minutes,
        base_url=ctx.settings.orchestrator_api_url,
        promoted_of=ctx.promoted_of,
    )
    return alert_pipeline.run(ctx.engine, inputs, ctx.alerting, now, ctx.alert_post)


def drained_endpoints(repository: SqlActionRepository, service: str) -> dict[str, Action]:
    """Endpoints of a service whose latest successful drain or restore was a drain."""
    latest: dict[str, Action] = {}
    for action in repository.list(service=service):  # newest first
        endpoint = action.params.get("endpoint")
        moves = (ActionKind.DRAIN_ENDPOINT, ActionKind.RESTORE_ENDPOINT)
        if action.kind in moves and action.state is ActionState.SUCCEEDED and endpoint:
            latest.setdefault(str(endpoint), action)
    return {n: a for n, a in latest.items() if a.kind is ActionKind.DRAIN_ENDPOINT}


def restoring(repository: SqlActionRepository, executor: Executor) -> Executor:
    """A restore proposed by the policy learns the endpoint's URL from the drain it reverses."""

    def run(action: Action) -> ActionResult:
        if not action.params.get("url"):
            endpoint = str(action.params.get("endpoint"))
            drain = drained_endpoints(repository, action.service).get(endpoint)
            if drain is not None:
                keys = ("url", "service", "max_concurrency")
                action.params.update({k: drain.params.get(k) for k in keys})
        return executor(action)

    return run
