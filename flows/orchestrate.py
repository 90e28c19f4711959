"""The orchestration flow: detect anomalies, assess each service, decide and heal (every 5 min).

The API process publishes the anomalies this flow stores on its WebSocket (it watches the
table), so the flow needs no connection to the API, except for RelayCore's drain and restore and
its live figures per endpoint (ORCHESTRATOR_API_URL). Each replica's series is detected on its
own; a drained replica is probed over HTTP (127.0.0.1 only) before it is restored; the replica
count scaling starts from is RelayCore's registered, undrained endpoints (read from the store).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.relaycore_client import http_endpoints, relaycore_executors
from monitoring.alerts.delivery import SinkReport
from monitoring.alerts.pipeline import AlertReport, registry_promoted
from monitoring.assess.capacity_model import FittedForecaster
from monitoring.assess.failure_model import RiskModel
from monitoring.assess.insights import Assessment, Predictor
from monitoring.config import get_alert_settings, get_orchestrator_settings, get_settings
from monitoring.healing.actions import Action, Mode
from monitoring.healing.executors import base_executors
from monitoring.healing.policy import ModelHealth
from monitoring.orchestrator import cycle as orchestrator
from monitoring.orchestrator.replicas import serving_count
from monitoring.store.engine import open_store


def _context(
    predictor: Predictor | None = None, model: ModelHealth | None = None
) -> orchestrator.OrchestratorContext:
    settings, config = get_settings(), get_orchestrator_settings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    engine = open_store(settings.database_url)
    return orchestrator.OrchestratorContext(
        engine=engine,
        settings=config,
        predictor=predictor,
        model=model,
        endpoints=http_endpoints(config, engine),
        executors={**base_executors(config), **relaycore_executors(config, key)},
        alerting=get_alert_settings(),
        promoted_of=registry_promoted(settings.model_name),
    )


@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def list_services() -> list[str]:
    return orchestrator.known_services(_context().engine)


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load_champion(now: datetime) -> tuple[Predictor | None, ModelHealth | None]:
    """NeuroWeaver's champion and its recent health; (None, None) when there is none."""
    import mlflow

    from monitoring.assess.model_health import model_health
    from monitoring.neuroweaver import registry

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    champion = registry.alias_version(settings.model_name, settings.model_alias)
    if champion is None:
        return None, None
    try:
        model, version = registry.load_version(settings.model_name, champion)
    except registry.ModelLoadError as exc:
        get_run_logger().warning("no predicted score this run: %s", exc)
        return None, None
    engine = open_store(settings.database_url)
    health = model_health(
        engine, model.predict, settings.model_name, version, settings.model_alias, now
    )
    return model.predict, health


@task(cache_policy=NO_CACHE)
def watch_drift(now: datetime) -> dict[str, Any]:
    """The served NeuroWeaver's inputs against its training profile (flows/drift_watch.py); a
    registry or store failure is reported, never the cycle's failure."""
    import mlflow

    from flows.drift_watch import watch
    from monitoring.neuroweaver import registry

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        return watch(
            settings.model_name,
            settings.model_alias,
            settings.database_url,
            get_orchestrator_settings(),
            now,
        )
    except (registry.RegistryUnreachable, registry.NotFound, ValueError) as exc:
        get_run_logger().warning("drift watch skipped: %s", exc)
        return {"model": settings.model_name, "status": f"failed: {exc}"}


@task(cache_policy=NO_CACHE)
def review_shadow(now: datetime) -> dict[str, Any]:
    """NeuroWeaver's @challenger on the live requests it shadowed (flows/shadow_review.py); a
    verdict leaves a markdown artifact; a registry or store failure is reported, never the
    cycle's failure."""
    import mlflow
    from prefect.artifacts import create_markdown_artifact

    from flows.shadow_review import review, verdict_markdown
    from monitoring.neuroweaver import registry

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        report = review(settings.model_name, settings, now)
    except (registry.RegistryUnreachable, registry.NotFound, ValueError) as exc:
        get_run_logger().warning("shadow review skipped: %s", exc)
        return {"model": settings.model_name, "status": f"skipped: {exc}"}
    if report["status"] in ("promote", "reject", "failed"):
        create_markdown_artifact(key="neuroweaver-shadow", markdown=verdict_markdown(report))
    return report


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load_forecaster() -> FittedForecaster | None:
    """capacity-forecaster@champion's per-series choices; None (choose on the spot) without one."""
    import mlflow

    from monitoring.assess import capacity_model
    from monitoring.neuroweaver import registry

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    champion = registry.alias_version(capacity_model.MODEL_NAME, "champion")
    if champion is None:
        return None
    try:
        return capacity_model.load_version(champion)
    except registry.ModelLoadError as exc:
        get_run_logger().warning("capacity forecasts choose on the spot this run: %s", exc)
        return None


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load_risk_model() -> RiskModel | None:
    """failure-risk@champion; None (the hand-set rule answers) without one."""
    import mlflow

    from monitoring.assess import failure_model
    from monitoring.neuroweaver import registry

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    champion = registry.alias_version(failure_model.MODEL_NAME, "champion")
    if champion is None:
        return None
    try:
        return RiskModel(failure_model.load_version(champion), champion)
    except registry.ModelLoadError as exc:
        get_run_logger().warning("the hand-set rule gives the risk this run: %s", exc)
        return None


@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def detect(service: str, now: datetime) -> list[dict[str, Any]]:
    """Scores the new samples of the service's own series and of each of its replicas; stores
    and returns the anomalies that opened (those scored on arrival are not scored again)."""
    return orchestrator.detect_service(_context().engine, service, now, get_orchestrator_settings())


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def assess(
    service: str,
    now: datetime,
    predictor: Predictor | None,
    forecaster: FittedForecaster | None,
    risk_model: RiskModel | None = None,
) -> Assessment:
    """One service; its scaling starts from its registered, undrained endpoints in RelayCore,
    its risk is failure-risk@champion's when there is one, else the hand-set rule's."""
    context = _context()
    replicas = serving_count(context.endpoints_of()(service))
    return orchestrator.assess_service(
        context.engine, service, now, predictor, context.settings, forecaster, replicas, risk_model
    )


def _summary(actions: list[Action]) -> list[dict[str, Any]]:
    return [
        {
            "id": a.id,
            "kind": str(a.kind),
            "service": a.service,
            "replica": a.replica,
            "state": str(a.state),
        }
        for a in actions
    ]


# No retries: a healing action runs once, and a failure is recorded, never repeated.
@task(cache_policy=NO_CACHE)
def heal(
    assessments: list[Assessment], model: ModelHealth | None, mode: Mode
) -> list[dict[str, Any]]:
    return _summary(orchestrator.heal(_context(model=model), assessments, mode, "orchestrate-flow"))


# No retries: the drains and restores it decides run once (detection alone is idempotent).
@task(cache_policy=NO_CACHE)
def react_on_arrival(
    services: list[str], now: datetime, started_by: str = "ingest-flow"
) -> dict[str, Any]:
    """Detection on arrival for the services just ingested, then the drains and restores their
    replicas' own evidence calls for (HEALING_MODE), then their alerts; for the ingestion flow,
    after it stores. A sink that is down is logged and retried by the next run."""
    done = orchestrator.react_on_arrival(_context(), services, now, started_by)
    _warn_undelivered(done.alerts)
    return {"new_anomalies": done.new_anomalies, "actions": _summary(done.actions)}


def _warn_undelivered(report: AlertReport | None) -> list[SinkReport]:
    deliveries = [] if report is None else report.deliveries
    for d in deliveries:
        if d.error:
            get_run_logger().warning("alerts to %s not delivered: %s", d.sink, d.error)
    return deliveries


# Retried once for the store; a sink that is down is recorded and retried on the next run.
@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def alert(
    assessments: list[Assessment], model: ModelHealth | None, now: datetime
) -> dict[str, Any]:
    """Raises the alerts of this run and delivers what is due, retries included."""
    import mlflow

    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)  # for the promotion decisions
    report = orchestrator.alert(_context(model=model), assessments, now)
    deliveries = _warn_undelivered(report)
    return {
        "queued": 0 if report is None else report.queued,
        "deliveries": [{"sink": d.sink, "sent": d.sent, "error": d.error} for d in deliveries],
    }


@flow(name="ai-orchestrate", log_prints=True)
def orchestrate_flow(mode: Mode | None = None, as_of: datetime | None = None) -> dict[str, Any]:
    """Detect, assess and heal over the metric store; healing follows HEALING_MODE unless `mode`."""
    logger = get_run_logger()
    now = (as_of or datetime.now(UTC)).astimezone(UTC)
    mode = mode or get_orchestrator_settings().healing_mode
    services = list_services()
    new = [a for s in services for a in detect(s, now)]
    predictor, model = load_champion(now)
    forecaster = load_forecaster()
    risk_model = load_risk_model()
    assessments = [assess(s, now, predictor, forecaster, risk_model) for s in services]
    actions = heal(assessments, model, mode)
    alerts = alert(assessments, model, now)
    drifts = [watch_drift(now)]
    shadows = [review_shadow(now)]
    for a in actions:
        logger.info("action %s %s for %s: %s", a["id"], a["kind"], a["service"], a["state"])
    logger.info("%d services, %d new anomalies, %d actions", len(services), len(new), len(actions))
    return {
        "at": now.isoformat(),
        "mode": str(mode),
        "services": services,
        "new_anomalies": new,
        "risks": {a.service: None if a.risk is None else a.risk.risk for a in assessments},
        "risk_model": risk_model.label if risk_model else "hand-set rule",
        "actions": actions,
        "alerts": alerts,
        "drift": drifts,
        "shadow": shadows,
    }
