"""The Open Inference Protocol V2 REST endpoints: server and model health, metadata, infer.

Errors carry the protocol's body, `{"error": "..."}`. A ready check answers 200 when ready and
503 when not (as the protocol's OpenAPI document has it), with the reason in the body.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from monitoring.neuroweaver import registry
from serving.inference import infer
from serving.inference.adapters import ModelAdapter, ModelRepository, UnknownModel
from serving.inference.schemas import (
    InferenceError,
    InferenceLive,
    InferenceModelMetadata,
    InferenceModelReady,
    InferenceReady,
    InferenceRequest,
    InferenceResponse,
    InferenceServerMetadata,
)
from serving.state import StateDep

EXTENSIONS = ["binary_tensor_data"]
router = APIRouter(prefix="/v2", tags=["open inference protocol"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": InferenceError, "description": "bad input"},
    404: {"model": InferenceError, "description": "unknown model or version"},
    503: {"model": InferenceError, "description": "the model or the registry is not ready"},
}


async def get_models(request: Request) -> ModelRepository:
    return request.app.state.inference  # type: ignore[no-any-return]


ModelsDep = Annotated[ModelRepository, Depends(get_models)]


def oip_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@router.get("", response_model=InferenceServerMetadata)
async def server_metadata(request: Request) -> InferenceServerMetadata:
    """The server's name, version and protocol extensions."""
    return InferenceServerMetadata(
        name="automatrix", version=request.app.version, extensions=EXTENSIONS
    )


@router.get("/health/live", response_model=InferenceLive)
async def server_live() -> InferenceLive:
    """Liveness."""
    return InferenceLive(live=True)


@router.get(
    "/health/ready", response_model=InferenceReady, responses={503: {"model": InferenceReady}}
)
async def server_ready(models: ModelsDep) -> Response:
    """Ready when every model served over the protocol has a version loaded."""
    ready = all(models.get(name).current() is not None for name in models.names())
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@router.get("/models/{name}", response_model=InferenceModelMetadata, responses=_ERRORS)
async def model_metadata(models: ModelsDep, name: str) -> Response:
    """The model's input and output tensors and the version it serves."""
    return await _metadata(models, name, None)


@router.get(
    "/models/{name}/versions/{version}", response_model=InferenceModelMetadata, responses=_ERRORS
)
async def version_metadata(models: ModelsDep, name: str, version: str) -> Response:
    """One registered version's input and output tensors."""
    return await _metadata(models, name, version)


@router.get("/models/{name}/ready", response_model=InferenceModelReady, responses=_ERRORS)
async def model_ready(models: ModelsDep, name: str) -> Response:
    """Whether the model's alias has a version loaded (200) or not (503)."""
    return await _ready(models, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=InferenceModelReady,
    responses=_ERRORS,
)
async def version_ready(models: ModelsDep, name: str, version: str) -> Response:
    """Whether one registered version loads and passes its check (200) or not (503)."""
    return await _ready(models, name, version)


_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {"schema": InferenceRequest.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "JSON header (Inference-Header-Content-Length bytes), then tensor data",
            },
        }
    }
}


@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    responses={**_ERRORS, 413: {"model": InferenceError}},
    openapi_extra=_INFER_DOC,
)
async def model_infer(state: StateDep, models: ModelsDep, request: Request, name: str) -> Response:
    """Scores the input tensor with the served version (JSON or binary tensor data)."""
    return await _infer(state, models, request, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    responses={**_ERRORS, 413: {"model": InferenceError}},
    openapi_extra=_INFER_DOC,
)
async def version_infer(
    state: StateDep, models: ModelsDep, request: Request, name: str, version: str
) -> Response:
    """Scores the input tensor with one registered version."""
    return await _infer(state, models, request, name, version)


async def _infer(
    state: Any, models: ModelRepository, request: Request, name: str, version: str | None
) -> Response:
    # InferPath answers these requests before routing; this route documents them and answers
    # when the app runs without that middleware.
    reply = await infer.answer(
        state, models, name, version, await request.body(), request.headers.get(infer.HEADER_LENGTH)
    )
    headers = dict((k.decode(), v.decode()) for k, v in infer.reply_headers(reply)[2:])
    kind = "application/json" if reply.header_length is None else "application/octet-stream"
    return Response(reply.body, status_code=reply.status, media_type=kind, headers=headers)


async def _metadata(models: ModelRepository, name: str, version: str | None) -> Response:
    try:
        adapter = models.get(name)
        if version is not None:
            await run_in_threadpool(_known_version, adapter, version)
    except (UnknownModel, registry.NotFound) as exc:
        return oip_error(404, str(exc))
    except registry.RegistryUnreachable as exc:
        return oip_error(503, str(exc))
    served = version or adapter.current()
    body = InferenceModelMetadata(
        name=adapter.name,
        versions=[served] if served else [],
        platform=adapter.platform,
        inputs=[adapter.input.metadata()],  # type: ignore[list-item]
        outputs=[adapter.output.metadata()],  # type: ignore[list-item]
    )
    return JSONResponse(body.model_dump())


def _known_version(adapter: ModelAdapter, version: str) -> None:
    if not version.isdigit():
        raise registry.NotFound(f"model {adapter.name!r} has no version {version!r}")
    registry.get_version(adapter.name, version)


async def _ready(models: ModelRepository, name: str, version: str | None) -> Response:
    try:
        adapter = models.get(name)
    except UnknownModel as exc:
        return oip_error(404, str(exc))
    if version is None:
        current = adapter.current()
        reason = None if current else adapter.problem()
        return _readiness(adapter.name, current, reason)
    try:
        await run_in_threadpool(_known_version, adapter, version)
        await models.version(adapter, version)
    except registry.NotFound as exc:
        return oip_error(404, str(exc))
    except (registry.ModelLoadError, registry.RegistryUnreachable) as exc:
        return _readiness(adapter.name, None, str(exc), version)
    return _readiness(adapter.name, version, None)


def _readiness(
    name: str, version: str | None, reason: str | None, asked: str | None = None
) -> Response:
    body = InferenceModelReady(
        name=name, ready=version is not None, version=version or asked, reason=reason
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if body.ready else 503)
