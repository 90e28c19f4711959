"""The AI Orchestrator's cycle: detect, assess, decide and heal, over the metric store.

`flows/orchestrate.py` runs these steps as Prefect tasks every five minutes; the API runs
`run_cycle` on demand. Everything the cycle talks to (the served model, RelayCore, MLflow, a
webhook, a shell) comes in through `OrchestratorContext`, so it is tested on a real SQLite store
without any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring.alerts import pipeline as alert_pipeline
from monitoring.alerts.delivery import Post, http_post
from monitoring.assess.capacity_model import FittedForecaster
from monitoring.assess.failure_model import RiskModel
from monitoring.assess.insights import NOW_ROWS, Assessment, OpenAnomaly, Predictor, assess
from monitoring.config import AlertSettings, OrchestratorSettings, get_settings
from monitoring.healing.actions import (
    Action,
    ActionKind,
    ActionResult,
    ActionState,
    Executor,
    Mode,
    moved_replica,
)
from monitoring.healing.engine import HealingEngine
from monitoring.healing.policy import (
    EndpointHealth,
    HealingInputs,
    ModelHealth,
    decide,
    median_latency,
)
from monitoring.healing.probe import Probe, http_probe, no_probe
from monitoring.orchestrator import arrival
from monitoring.orchestrator.replicas import (
    BASELINE,
    Shifts,
    replica_shifts,
    serving_count,
    stored_endpoints,
)
from monitoring.samples import SERVICE_ROW
from monitoring.store.metrics import read_samples, service_names
from monitoring.store.orchestrator import OPEN, SqlActionRepository, utcnow
from monitoring.store.tables import AnomalyRow

describe_anomaly = arrival.describe_anomaly

Publish = Callable[[str, dict[str, Any]], object]
# A service's registered RelayCore endpoints (drained ones too), with RelayCore's figures for each.
EndpointsOf = Callable[[str], list[EndpointHealth]]
# The forecaster's whole window (four weekly cycles, so a weekly season can apply); the risk's
# trends need only the last hour of it.
ASSESS_HISTORY = timedelta(days=28)
LATENCY_NOW = timedelta(minutes=10)


@dataclass
class OrchestratorContext:
    engine: Engine
    settings: OrchestratorSettings
    predictor: Predictor | None = None
    forecaster: FittedForecaster | None = None
    # failure-risk@champion; None: the hand-set rule answers.
    risk_model: RiskModel | None = None
    model: ModelHealth | None = None
    # None: RelayCore's desired state in the store (names, URLs, drains; no figures).
    endpoints: EndpointsOf | None = None
    # How a drained replica is probed before it is restored (127.0.0.1 only by default).
    probe: Probe = field(default_factory=http_probe)
    executors: Mapping[ActionKind, Executor] = field(default_factory=dict)
    publish: Publish = lambda _type, _payload: None
    clock: Callable[[], datetime] = utcnow
    # None: no alerts are raised (docs/alerts.md); `promoted_of` reads a training's decision.
    alerting: AlertSettings | None = None
    promoted_of: alert_pipeline.PromotedOf | None = None
    alert_post: Post = http_post

    def repository(self) -> SqlActionRepository:
        return SqlActionRepository(self.engine)

    def endpoints_of(self) -> EndpointsOf:
        return self.endpoints or stored_endpoints(self.engine)

    def healing(self) -> HealingEngine:
        executors = dict(self.executors)
        restore = executors.get(ActionKind.RESTORE_ENDPOINT)
        if restore is not None:
            executors[ActionKind.RESTORE_ENDPOINT] = restoring(self.repository(), restore)
        policy = replace(
            self.settings.healing_policy(), max_replicas=self.settings.scaling_max_replicas
        )
        return HealingEngine(self.repository(), executors, policy, clock=self.clock)


@dataclass(frozen=True)
class ReplicaAnomaly:
    """A replica's open anomaly of its own metrics."""

    metrics: tuple[str, ...]
    score: float
    start: datetime
    end: datetime  # its last anomalous row


@dataclass
class CycleReport:
    at: datetime
    mode: Mode
    new_anomalies: list[dict[str, Any]]
    assessments: list[Assessment]
    actions: list[Action]
    alerts: alert_pipeline.AlertReport | None = None


# --- detection ----------------------------------------------------------------------------


def detect_service(
    engine: Engine, service: str, now: datetime, settings: OrchestratorSettings
) -> list[dict[str, Any]]:
    """Scores the new rows of the service's own series and of each of its replicas; stores what
    opened, grew or closed and returns the anomalies that opened."""
    return arrival.detect_arrived(engine, [service], now, settings)


def detect_all(
    engine: Engine, services: Sequence[str], now: datetime, settings: OrchestratorSettings
) -> list[dict[str, Any]]:
    return arrival.detect_arrived(engine, services, now, settings)


def open_anomalies(engine: Engine, service: str, replica: str = SERVICE_ROW) -> list[OpenAnomaly]:
    """The open anomalies of the service's own series (or of one replica's, by name)."""
    query = select(AnomalyRow).where(
        AnomalyRow.service == service, AnomalyRow.replica == replica, AnomalyRow.state == OPEN
    )
    with Session(engine) as session:
        return [OpenAnomaly(tuple(r.metrics), r.score) for r in session.scalars(query)]


def replica_anomalies(engine: Engine, service: str) -> dict[str, ReplicaAnomaly]:
    """Each replica's strongest open anomaly of its own metrics, by replica name."""
    query = select(AnomalyRow).where(
        AnomalyRow.service == service, AnomalyRow.replica != SERVICE_ROW, AnomalyRow.state == OPEN
    )
    found: dict[str, ReplicaAnomaly] = {}
    with Session(engine) as session:
        for r in session.scalars(query.order_by(AnomalyRow.score)):
            found[r.replica] = ReplicaAnomaly(tuple(r.metrics), r.score, r.start, r.end)
    return found


# --- assessment and healing ---------------------------------------------------------------


def assess_service(
    engine: Engine,
    service: str,
    now: datetime,
    predictor: Predictor | None,
    settings: OrchestratorSettings,
    forecaster: FittedForecaster | None = None,
    replicas: int | None = None,
    risk_model: RiskModel | None = None,
) -> Assessment:
    """One service's assessment; its CPU forecast uses the forecaster's fitted choice if any,
    its risk the learned `risk_model` if any (else the hand-set rule), and its scaling advice
    starts from `replicas` (the serving endpoints; None or 0: none is registered, so the
    SCALING_REPLICAS setting)."""
    with Session(engine) as session:
        samples = read_samples(session, start=now - ASSESS_HISTORY, end=now, services=[service])
    anomalies = open_anomalies(engine, service)
    choice = forecaster.choice_for(service, "cpu_usage") if forecaster else None
    return assess(
        service,
        samples,
        now,
        anomalies,
        predictor,
        settings,
        choice=choice,
        replicas=replicas,
        risk_model=risk_model,
    )


def healing_inputs(
    assessment: Assessment,
    anomalies: Sequence[OpenAnomaly],
    registered: Sequence[EndpointHealth],
    drained: Mapping[str, Action] | None = None,
    own: Mapping[str, ReplicaAnomaly] | None = None,
    restored: Mapping[str, datetime] | None = None,
    probe: Probe = no_probe,
    shifts: Mapping[str, tuple[Shifts, Shifts]] | None = None,
) -> HealingInputs:
    """What the policy needs about one service, each replica with its own evidence.

    - A serving replica carries RelayCore's figures for it and its own open anomaly; an anomaly
      that began before the replica's last restore is the one that drained it, not new evidence;
      with it, how far the replica and its peers moved since it began (`shifts`), and how long
      ago its last anomalous row was (a passed blip is no evidence, see `current_anomaly`).
    - A replica that healing drained (`drained`, from the audit) is probed: without traffic its
      own metrics say nothing. One drained by someone else is theirs, and left out.
    - The service's normal latency, which a probe is held to, is its serving replicas' median in
      RelayCore, else the service's own latency now.
    """
    drained, own, restored, shifts = drained or {}, own or {}, restored or {}, shifts or {}
    endpoints: list[EndpointHealth] = []
    for e in registered:
        if e.drained:
            if e.name in drained:
                endpoints.append(_probed(e, probe))
            continue
        found = own.get(e.name)
        since = restored.get(e.name)
        if found is not None and (since is None or found.start > since):
            shift, peer = shifts.get(e.name, ({}, {}))
            e = replace(
                e,
                anomaly_score=found.score,
                anomaly_metrics=found.metrics,
                shift=shift,
                peer_shift=peer,
                anomaly_quiet=max(assessment.at - found.end, timedelta(0)),
            )
        endpoints.append(e)
    names = {e.name for e in registered}
    for name, drain in drained.items():
        # Drained by removal, before drains kept endpoints registered (those drains named no
        # replica); one of today's drains that is gone was removed on purpose (scaled in).
        if name not in names and "replica" not in drain.params:
            url = drain.params.get("url")
            gone = EndpointHealth(name, 0.0, True, url=None if url is None else str(url))
            endpoints.append(_probed(gone, probe))
    normal = median_latency([e for e in endpoints if not e.drained])
    return HealingInputs(
        service=assessment.service,
        endpoints=endpoints,
        risk=None if assessment.risk is None else assessment.risk.risk,
        risk_threshold=None if assessment.risk is None else assessment.risk.threshold,
        recommendation=assessment.recommendation,
        anomalies=sorted({m for a in anomalies for m in a.metrics}),
        normal_latency_ms=normal or assessment.health.get("network_latency"),
    )


def _probed(endpoint: EndpointHealth, probe: Probe) -> EndpointHealth:
    drained = replace(endpoint, drained=True, anomaly_score=0.0, anomaly_metrics=())
    return drained if not endpoint.url else replace(drained, probe=probe(endpoint.url))


def heal_inputs(ctx: OrchestratorContext, assessment: Assessment) -> HealingInputs:
    """Reads one service's evidence (RelayCore, the store, the audit, probes) for the policy."""
    service, repository = assessment.service, ctx.repository()
    own = replica_anomalies(ctx.engine, service)
    return healing_inputs(
        assessment,
        open_anomalies(ctx.engine, service),
        ctx.endpoints_of()(service),
        drained_endpoints(repository, service),
        own,
        restored_endpoints(repository, service),
        ctx.probe,
        anomaly_shifts(ctx.engine, service, own, assessment.at),
    )


def anomaly_shifts(
    engine: Engine, service: str, own: Mapping[str, ReplicaAnomaly], now: datetime
) -> dict[str, tuple[Shifts, Shifts]]:
    """For each replica with an open anomaly: how far it and its peers moved since it began."""
    if not own:
        return {}
    earliest = min(a.start for a in own.values())
    with Session(engine) as session:
        samples = read_samples(
            session,
            start=earliest - BASELINE,
            end=now,
            services=[service],
            replica=None,
        )
    return {
        name: replica_shifts(samples, name, found.start, found.metrics)
        for name, found in own.items()
    }


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
        actions += healing.run(heal_inputs(ctx, assessment), mode, started_by)
    if ctx.model is not None:
        actions += healing.run(HealingInputs(ctx.model.name, model=ctx.model), mode, started_by)
    return actions


def heal_replicas(
    ctx: OrchestratorContext,
    services: Sequence[str],
    now: datetime,
    mode: Mode | None = None,
    started_by: str = "arrival",
) -> list[Action]:
    """Drains and restores only, each replica on its own evidence: cheap enough to follow
    `detect_arrived` on every arrival (no assessment, no forecast). Scaling, commands and
    rollbacks stay with the five-minute cycle, which has the history they need."""
    mode = mode or ctx.settings.healing_mode
    if mode is Mode.OFF:
        return []
    healing = ctx.healing()
    healing.policy = replace(healing.policy, webhook_url=None, commands={})
    actions: list[Action] = []
    for service in services:
        latency = latency_now(ctx.engine, service, now)
        health = {} if latency is None else {"network_latency": latency}
        for proposal in decide(
            heal_inputs(ctx, Assessment(service, now, 0, health)), healing.policy
        ):
            # Called every minute, a rate-limited proposal would be recorded every minute; the
            # cycle records it every five.
            replica = moved_replica(proposal.kind, proposal.params)
            if not healing.rate_limited(service, proposal.kind, healing.clock(), replica):
                actions.append(healing.submit(service, proposal, mode, started_by))
    return actions


@dataclass
class Reaction:
    """What one arrival did: the anomalies that opened, the drains and restores, the alerts."""

    new_anomalies: list[dict[str, Any]]
    actions: list[Action]
    alerts: alert_pipeline.AlertReport | None


def react_on_arrival(
    ctx: OrchestratorContext,
    services: Sequence[str],
    now: datetime,
    started_by: str,
    detect: bool = True,
) -> Reaction:
    """Detection on arrival, then the replicas' drains and restores, then the alerts on them:
    an anomaly alert and a drain's alert go out within the minute the rows came, not at the next
    five-minute cycle. Only anomalies and actions are evaluated here (no assessment, no model,
    no training), so no risk or model alert is resolved on their behalf. Without `detect`
    (RelayCore's watch), only the drains and restores, and alerts only when one was done."""
    new = arrival.detect_arrived(ctx.engine, services, now, ctx.settings) if detect else []
    actions = heal_replicas(ctx, services, now, started_by=started_by)
    if not (detect or actions):
        return Reaction(new, actions, None)
    return Reaction(new, actions, alert(replace(ctx, model=None, promoted_of=None), [], now))


def latency_now(engine: Engine, service: str, now: datetime) -> float | None:
    """The service's own latency now: the mean of its last rows within ten minutes."""
    with Session(engine) as session:
        rows = read_samples(session, start=now - LATENCY_NOW, end=now, services=[service])
    recent = [s.network_latency for s in rows[-NOW_ROWS:]]
    return sum(recent) / len(recent) if recent else None


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
    endpoints = ctx.endpoints_of()
    assessments = [
        assess_service(
            ctx.engine,
            s,
            now,
            ctx.predictor,
            ctx.settings,
            ctx.forecaster,
            replicas=serving_count(endpoints(s)),
            risk_model=ctx.risk_model,
        )
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


def restored_endpoints(repository: SqlActionRepository, service: str) -> dict[str, datetime]:
    """When each endpoint of a service was last restored by a successful action."""
    found: dict[str, datetime] = {}
    for action in repository.list(service=service, kind=ActionKind.RESTORE_ENDPOINT):
        endpoint = action.params.get("endpoint")
        if action.state is ActionState.SUCCEEDED and endpoint:
            found.setdefault(str(endpoint), action.updated_at or action.created_at)
    return found


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
