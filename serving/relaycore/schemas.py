"""Request and response bodies of the RelayCore API."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from routing import PRIORITY_MAX, PRIORITY_MIN


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


class RelayMessageRequest(BaseModel):
    """A message to forward as a JSON POST to the best endpoint."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    payload: dict[str, Any]
    priority: int = Field(
        default=5, ge=PRIORITY_MIN, le=PRIORITY_MAX, description="0 least urgent .. 9 most urgent"
    )
    service: str | None = Field(
        default=None, min_length=1, max_length=200, description="omit for any endpoint"
    )
    async_: bool = Field(
        default=False,
        alias="async",
        description="store durably, answer 202 and deliver in the background",
    )
    deadline_ms: float | None = Field(default=None, gt=0, le=86_400_000)

    @field_validator("payload")
    @classmethod
    def _json_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not _finite(value):
            raise ValueError("payload must not contain NaN or infinite numbers")
        return value


class RelayMessageResponse(BaseModel):
    endpoint: str
    status: int
    body: Any
    latency_ms: float
    attempts: int


class RelayMessageAccepted(BaseModel):
    id: str
    state: str
    status_url: str


class RelayEndpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str = Field(min_length=1, max_length=2000)
    service: str | None = Field(default=None, min_length=1, max_length=200)
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)


class RelayEndpointInfo(BaseModel):
    name: str
    url: str
    service: str | None
    max_concurrency: int
    drained: bool = False  # kept, but sent nothing new (POST .../endpoints/{name}/undrain)


class RelayPolicyRequest(BaseModel):
    policy: Literal["round_robin", "least_request", "peak_ewma", "adaptive"]


class RelayOptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=20, ge=1, le=100)
    timeout_s: float = Field(default=30.0, gt=0, le=120)
