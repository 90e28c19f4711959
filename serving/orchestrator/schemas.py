"""Request and response bodies of the AI Orchestrator's endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from monitoring.healing.actions import Mode


class AnomalyInfo(BaseModel):
    id: int
    service: str
    replica: str | None = Field(
        default=None,
        description="the replica (RelayCore endpoint name) whose own metrics it is in; "
        "null: the service's own, combined series",
    )
    metrics: list[str] = Field(description="the metrics involved, strongest first")
    start: datetime
    end: datetime
    score: float = Field(description="the strongest score in [0, 1] while it lasted")
    severity: str = Field(description="low, medium, high or critical, from the score")
    state: str = Field(description="open while the metrics stay unusual, then closed")


class AnomalyList(BaseModel):
    count: int
    anomalies: list[AnomalyInfo]


class ForecastPoint(BaseModel):
    at: datetime
    mean: float
    lower: dict[str, float] = Field(description="lower bound per interval level, e.g. '80'")
    upper: dict[str, float]


class ThresholdCrossingInfo(BaseModel):
    threshold: float
    expected_at: datetime | None = Field(description="when the point forecast reaches it")
    possible_at: datetime | None = Field(description="when the upper bound of the interval does")
    level: int


class CapacityForecastResponse(BaseModel):
    service: str
    metric: str
    horizon_minutes: int
    step_minutes: float
    model: str
    fitted_version: str | None = Field(
        default=None,
        description="the capacity-forecaster version whose choice for this series answered; "
        "null: chosen on the spot (no champion, or the series is new to it)",
    )
    history_points: int
    threshold: float | None
    crossing: ThresholdCrossingInfo | None = Field(description="null: not crossed in the horizon")
    points: list[ForecastPoint]


class RiskFactorInfo(BaseModel):
    name: str
    value: float
    contribution: float
    detail: str


class FailureRiskInfo(BaseModel):
    risk: float = Field(description="probability-like risk of missing the objectives, in [0, 1]")
    horizon_minutes: int
    factors: list[RiskFactorInfo]
    risk_model: str = Field(
        description='which answered: "failure-risk vN" (the learned @champion) or "hand-set rule"'
    )
    threshold: float | None = Field(
        description="the learned version's alarm threshold, chosen on validation; null for the rule"
    )
    alarm: bool | None = Field(description="risk at or above the threshold; null for the rule")


class ScalingRecommendationInfo(BaseModel):
    rule: str = Field(description="hpa (Kubernetes' reactive rule) or predictive")
    current_replicas: int
    desired_replicas: int
    direction: str
    reasons: list[str]
    forecast_value: float | None
    forecast_at: datetime | None


class ScalingCostInfo(BaseModel):
    price_per_replica_hour: float = Field(description="SCALING_PRICE_PER_REPLICA_HOUR")
    hours_per_month: float = Field(description="730: a year's hours over twelve")
    current_monthly: float = Field(description="a month at the current replica count")
    recommended_monthly: float = Field(description="a month at the recommended replica count")
    monthly_saving: float = Field(description="current minus recommended; negative adds cost")


class HealingActionInfo(BaseModel):
    id: str
    kind: str
    service: str
    replica: str | None = Field(
        default=None,
        description="the replica (RelayCore endpoint name) it drains or restores; "
        "null: an action on the service as a whole",
    )
    target: str
    cause: str
    started_by: str
    mode: str | None
    state: str
    result: str | None
    undo: str | None = Field(description="how to undo it, or null when it cannot be undone")
    undo_of: str | None
    approved_by: str | None
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None


class ActionList(BaseModel):
    count: int
    actions: list[HealingActionInfo]


class ServiceInsights(BaseModel):
    service: str
    at: datetime
    samples: int = Field(description="samples in the assessed window (the last three days)")
    enough_history: bool
    problems: list[str] = Field(description="what could not be computed, and why")
    health: dict[str, float] = Field(description="the metrics now (mean of the last minutes)")
    predicted_score: float | None = Field(
        description="NeuroWeaver's score now; null without a model"
    )
    model_version: str | None
    failure_risk: FailureRiskInfo | None
    open_anomalies: list[AnomalyInfo]
    capacity: CapacityForecastResponse | None
    scaling: ScalingRecommendationInfo | None
    cost: ScalingCostInfo | None = Field(
        default=None,
        description="the scaling advice's monthly cost; null without SCALING_PRICE_PER_REPLICA_HOUR",
    )
    recent_actions: list[HealingActionInfo]


class OptimizationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"mode": "dry_run"}]})

    mode: Mode = Field(default=Mode.DRY_RUN, description="off, dry_run (default), confirm or auto")


class ServiceDecision(BaseModel):
    service: str
    failure_risk: float | None
    scaling: ScalingRecommendationInfo | None
    problems: list[str]


class OptimizationResponse(BaseModel):
    at: datetime
    mode: str
    new_anomalies: list[AnomalyInfo]
    services: list[ServiceDecision]
    actions: list[HealingActionInfo] = Field(
        description="what was decided, with its cause and state"
    )


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="api", min_length=1, max_length=200, description="who approves")
