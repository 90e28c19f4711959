"""The protocol's bodies (the Open Inference Protocol V2 REST names them), one family of names,
and the catalog of registered models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class InferenceError(BaseModel):
    error: str = Field(description="the reason, as the protocol's error body carries it")


class InferenceServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class InferenceLive(BaseModel):
    live: bool


class InferenceReady(BaseModel):
    ready: bool


class InferenceModelReady(BaseModel):
    name: str
    ready: bool
    version: str | None = None
    reason: str | None = Field(default=None, description="why it is not ready")


class InferenceTensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 is any size")


class InferenceModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="the version served, or the one asked for")
    platform: str
    inputs: list[InferenceTensorMetadata]
    outputs: list[InferenceTensorMetadata]


class InferenceRequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data_size` when the data follows the JSON header"
    )
    data: list[Any] | None = Field(default=None, description="flat or nested, row-major")


class InferenceRequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(default=None, description="`binary_data`: bool")


class InferenceRequest(BaseModel):
    """Documentation only: the infer handler decodes the raw body (JSON or binary) itself."""

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data_output`: every output as binary data"
    )
    inputs: list[InferenceRequestInput]
    outputs: list[InferenceRequestOutput] | None = None


class InferenceResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferenceResponseOutput]


class LiveFigures(BaseModel):
    requests: int
    errors: int = Field(description="answers of 400 and above")
    rows: int
    p50_ms: float | None = Field(description="over the last 1024 requests")
    p99_ms: float | None


class RegisteredModelInfo(BaseModel):
    name: str
    aliases: dict[str, str] = Field(description="alias -> the version it points to")
    latest_version: str | None = Field(description="the highest registered version")
    description: str | None = None
    served_over_oip: bool = Field(description="whether /v2/models/{name} serves it")
    oip_path: str | None = Field(default=None, description="its Open Inference Protocol path")
    serving_version: str | None = Field(
        default=None, description="the version this process serves over the protocol"
    )
    live: LiveFigures | None = Field(
        default=None, description="this process's infer traffic to the model over the protocol"
    )
    shadow: dict[str, str] | None = Field(
        default=None,
        description="while a version is @challenger in shadow: its version, status (running), "
        "since, and the last review's evidence (labelled requests, both MAEs, p-values, reason)",
    )


class RegisteredModelList(BaseModel):
    models: list[RegisteredModelInfo]
