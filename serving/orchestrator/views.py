"""Turns the orchestrator's records and assessments into the API's response bodies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from monitoring.assess.insights import HOURS_PER_MONTH, Assessment, CapacityForecast, ScalingCost
from monitoring.assess.scaling import Recommendation
from monitoring.healing.actions import Action
from monitoring.orchestrator.cycle import CycleReport
from monitoring.store.tables import AnomalyRow
from serving.orchestrator.schemas import (
    AnomalyInfo,
    CapacityForecastResponse,
    FailureRiskInfo,
    ForecastPoint,
    HealingActionInfo,
    OptimizationResponse,
    RiskFactorInfo,
    ScalingCostInfo,
    ScalingRecommendationInfo,
    ServiceDecision,
    ServiceInsights,
    ThresholdCrossingInfo,
)


def aware(moment: datetime | None) -> datetime | None:
    """Query times without a zone are taken as UTC, like every time in the store."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def anomaly(row: AnomalyRow) -> AnomalyInfo:
    return AnomalyInfo(
        id=row.id,
        service=row.service,
        replica=row.replica or None,
        metrics=list(row.metrics),
        start=row.start,
        end=row.end,
        score=round(row.score, 4),
        severity=row.severity,
        state=row.state,
    )


def anomaly_dict(found: dict) -> AnomalyInfo:  # type: ignore[type-arg]
    return AnomalyInfo.model_validate(found)


def action(a: Action) -> HealingActionInfo:
    return HealingActionInfo(
        id=a.id,
        kind=str(a.kind),
        service=a.service,
        replica=a.replica,
        target=a.target,
        cause=a.reason,
        started_by=a.started_by,
        mode=None if a.mode is None else str(a.mode),
        state=str(a.state),
        result=a.result,
        undo=a.undo,
        undo_of=a.undo_of,
        approved_by=a.approved_by,
        params=dict(a.params),
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def capacity(
    service: str, found: CapacityForecast, horizon: int, fitted_version: str | None = None
) -> CapacityForecastResponse:
    f = found.forecast
    points = [
        ForecastPoint(
            at=at.to_pydatetime(),
            mean=float(f.mean[i]),
            lower={str(lv): float(f.lower[lv][i]) for lv in sorted(f.lower)},
            upper={str(lv): float(f.upper[lv][i]) for lv in sorted(f.upper)},
        )
        for i, at in enumerate(f.index)
    ]
    crossing = None
    if found.crossing is not None:
        c = found.crossing
        crossing = ThresholdCrossingInfo(
            threshold=c.threshold,
            level=c.level,
            expected_at=None if c.expected_at is None else c.expected_at.to_pydatetime(),
            possible_at=None if c.possible_at is None else c.possible_at.to_pydatetime(),
        )
    return CapacityForecastResponse(
        service=service,
        metric=found.metric,
        horizon_minutes=horizon,
        step_minutes=f.step.total_seconds() / 60,
        model=f.model,
        fitted_version=fitted_version,
        history_points=f.history_points,
        threshold=found.threshold,
        crossing=crossing,
        points=points,
    )


def scaling(rec: Recommendation | None) -> ScalingRecommendationInfo | None:
    if rec is None:
        return None
    return ScalingRecommendationInfo(
        rule=rec.rule,
        current_replicas=rec.current_replicas,
        desired_replicas=rec.desired_replicas,
        direction=rec.direction,
        reasons=list(rec.reasons),
        forecast_value=rec.forecast_value,
        forecast_at=rec.forecast_at,
    )


def cost(found: ScalingCost | None) -> ScalingCostInfo | None:
    if found is None:
        return None
    return ScalingCostInfo(
        price_per_replica_hour=found.price_per_replica_hour,
        hours_per_month=HOURS_PER_MONTH,
        current_monthly=round(found.current_monthly, 2),
        recommended_monthly=round(found.recommended_monthly, 2),
        monthly_saving=round(found.monthly_saving, 2),
    )


def risk(found: Assessment) -> FailureRiskInfo | None:
    if found.risk is None:
        return None
    factors = [
        RiskFactorInfo(name=f.name, value=f.value, contribution=f.contribution, detail=f.detail)
        for f in found.risk.factors
    ]
    threshold = found.risk.threshold
    return FailureRiskInfo(
        risk=found.risk.risk,
        horizon_minutes=found.risk.horizon_steps,
        factors=factors,
        risk_model=found.risk.model,
        threshold=threshold,
        alarm=None if threshold is None else found.risk.risk >= threshold,
    )


def insights(
    found: Assessment,
    open_rows: Sequence[AnomalyRow],
    recent: Sequence[Action],
    model_version: str | None,
) -> ServiceInsights:
    return ServiceInsights(
        service=found.service,
        at=found.at,
        samples=found.rows,
        enough_history=found.risk is not None and found.capacity is not None,
        problems=list(found.problems),
        health=found.health,
        predicted_score=found.predicted_score,
        model_version=model_version if found.predicted_score is not None else None,
        failure_risk=risk(found),
        open_anomalies=[anomaly(r) for r in open_rows],
        capacity=None
        if found.capacity is None
        else capacity(found.service, found.capacity, int(len(found.capacity.forecast.mean) * 5)),
        scaling=scaling(found.recommendation),
        cost=cost(found.cost),
        recent_actions=[action(a) for a in recent],
    )


def optimization(report: CycleReport) -> OptimizationResponse:
    decisions = [
        ServiceDecision(
            service=a.service,
            failure_risk=None if a.risk is None else a.risk.risk,
            scaling=scaling(a.recommendation),
            problems=list(a.problems),
        )
        for a in report.assessments
    ]
    return OptimizationResponse(
        at=report.at,
        mode=str(report.mode),
        services=decisions,
        new_anomalies=[anomaly_dict(a) for a in report.new_anomalies],
        actions=[action(a) for a in report.actions],
    )
