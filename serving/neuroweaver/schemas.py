"""The API's request and response bodies, one family of names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from monitoring.samples import BOUNDS

EXAMPLE_SAMPLE: dict[str, Any] = {
    "cpu_usage": 85.0,
    "memory_usage": 70.0,
    "network_latency": 200.0,
    "error_rate": 3.0,
    "request_count": 2000.0,
}


def _metric(name: str, description: str) -> Any:
    low, high = BOUNDS[name]
    return Field(ge=low, le=high, allow_inf_nan=False, description=description)


class PredictionInstance(BaseModel):
    """One sample of the five metrics; `service` and `timestamp` let analytics check it later."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_SAMPLE]})

    cpu_usage: float = _metric("cpu_usage", "percent, 0-100")
    memory_usage: float = _metric("memory_usage", "percent, 0-100")
    network_latency: float = _metric("network_latency", "milliseconds")
    error_rate: float = _metric("error_rate", "percent of requests, 0-100")
    request_count: float = _metric("request_count", "requests per minute")
    service: str | None = Field(default=None, description="optional, for analytics")
    timestamp: datetime | None = Field(default=None, description="optional, for analytics")


class PredictionBatch(BaseModel):
    instances: list[PredictionInstance] = Field(min_length=1, description="up to MAX_BATCH_ROWS")


class PredictionResponse(BaseModel):
    performance_score: float = Field(description="the share of the next minutes within the SLO")
    model_name: str
    model_version: str
    model_alias: str


class ScoredInstance(BaseModel):
    performance_score: float


class BatchPredictionResponse(BaseModel):
    predictions: list[ScoredInstance]
    count: int
    model_name: str
    model_version: str
    model_alias: str


class LabelledRow(PredictionInstance):
    performance_score: float = Field(ge=0, le=1, allow_inf_nan=False, description="the known label")


class TrainingRequest(BaseModel):
    """Search settings, and optionally the labelled rows to train on instead of the store."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"trials": 5, "timeout_s": 120, "max_epochs": 10}]},
    )

    data: list[LabelledRow] | None = Field(
        default=None, min_length=50, description="labelled rows; at least 50"
    )
    trials: int = Field(default=20, ge=1, le=1000)
    timeout_s: float = Field(default=480.0, gt=0, le=86_400)
    window_days: float = Field(default=7.0, gt=0, le=365)
    max_epochs: int = Field(default=25, ge=1, le=500)


class TrainingAccepted(BaseModel):
    flow_run_id: str
    flow_run_name: str | None
    state: str | None
    prefect_ui_url: str
    deployment: str | None = Field(
        description="the deployment that runs it, or null when run in this process"
    )


class TrainingRunInfo(BaseModel):
    id: str
    flow_run_id: str | None
    state: str
    trial: int
    n_trials: int
    epoch: int
    best_loss: float | None
    model_version: str | None
    message: str | None
    started_at: datetime
    updated_at: datetime
    prefect_ui_url: str | None


class TrainingStatus(BaseModel):
    enabled: bool
    running: int
    runs: list[TrainingRunInfo]


class ModelVersionInfo(BaseModel):
    name: str
    version: str
    aliases: list[str]
    serving: bool = Field(description="this process answers predictions with this version")
    created_at: datetime | None
    run_id: str | None
    metrics: dict[str, float]
    tags: dict[str, str]
    refused: str | None = Field(default=None, description="why serving refused this version")
    mlflow_ui_url: str


class ModelList(BaseModel):
    name: str
    alias: str
    champion_version: str | None
    serving_version: str | None
    versions: list[ModelVersionInfo]


class AliasChange(BaseModel):
    name: str
    alias: str
    version: str
    previous_version: str | None
    note: str = "serving picks the new champion up within MODEL_RELOAD_INTERVAL"


class WebhookAnswer(BaseModel):
    reloading: bool = Field(description="the registry is being checked for a new champion")
    detail: str


class MetricsPush(BaseModel):
    """Samples to store; each is checked on its own and a bad one never blocks the rest."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "samples": [
                        {
                            "service": "checkout",
                            "timestamp": "2025-01-01T12:00:00Z",
                            **EXAMPLE_SAMPLE,
                        }
                    ]
                }
            ]
        }
    )

    samples: list[dict[str, Any]] = Field(
        description=(
            "service, timestamp and the five metrics; optionally replica, the RelayCore endpoint"
            " name of the replica that was measured (its service's combined row is then stored"
            " beside it)"
        )
    )


class MetricsPushResult(BaseModel):
    accepted: int
    rejected: int
    reasons: list[str]
    # Detection on arrival for the pushed services: the anomalies that opened, the drains and
    # restores done; `reaction_error` says why it could not run (the samples are stored anyway).
    new_anomalies: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    reaction_error: str | None = None


class Health(BaseModel):
    status: str
    uptime_s: float


class Readiness(BaseModel):
    ready: bool
    model_version: str | None
    reasons: list[str]


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None
