"""NeuroWeaver: predictions from the champion, training runs and their progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from serving.ecosystem import live
from serving.neuroweaver.predict import score
from serving.neuroweaver.schemas import (
    EXAMPLE_SAMPLE,
    BatchPredictionResponse,
    PredictionBatch,
    PredictionInstance,
    PredictionResponse,
    TrainingAccepted,
    TrainingRequest,
    TrainingStatus,
)
from serving.neuroweaver.training import PrefectUnavailable, start_training
from serving.neuroweaver.validation import InputError
from serving.state import EngineDep, SettingsDep, StateDep

router = APIRouter(prefix="/api/v2/neuroweaver", tags=["neuroweaver"])

_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/PredictionInstance"},
                    {"$ref": "#/components/schemas/PredictionBatch"},
                ]
            },
            "examples": {
                "one sample": {"value": EXAMPLE_SAMPLE},
                "a batch": {
                    "value": {"instances": [EXAMPLE_SAMPLE, {**EXAMPLE_SAMPLE, "cpu_usage": 20.0}]}
                },
            },
        }
    },
}
_PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one score per sample and the model version that answered",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/PredictionResponse"},
                        {"$ref": "#/components/schemas/BatchPredictionResponse"},
                    ]
                }
            }
        },
    },
    413: {"description": "more instances than MAX_BATCH_ROWS, or a body over MAX_BODY_BYTES"},
    422: {"description": "a missing, non-numeric, NaN or out-of-range metric"},
    503: {"description": "no model is loaded yet; the reason is given"},
}


@router.post(
    "/predict",
    openapi_extra={"requestBody": _PREDICT_BODY},
    responses=_PREDICT_RESPONSES,
    response_class=Response,
)
async def predict(request: Request, state: StateDep) -> Response:
    """Scores one sample, or up to MAX_BATCH_ROWS as {"instances": [...]}, with the champion."""
    # In the app, serving.neuroweaver.predict.PredictPath answers this path before routing; this handler
    # documents it and serves it wherever the router is used without that middleware.
    try:
        payload = await score(state, request.body)
    except InputError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return Response(payload, media_type="application/json")


@router.post(
    "/train",
    status_code=202,
    response_model=TrainingAccepted,
    responses={
        403: {"description": "ENABLE_ML_TRAINING=false"},
        503: {"description": "the Prefect API is unavailable"},
    },
)
async def train(settings: SettingsDep, body: TrainingRequest | None = None) -> TrainingAccepted:
    """Starts a training as a Prefect flow run; answers at once with its id and Prefect UI link."""
    if not settings.enable_ml_training:
        raise HTTPException(
            403, "training is disabled on this deployment (ENABLE_ML_TRAINING=false)"
        )
    request = body or TrainingRequest()
    parameters = request.model_dump(exclude={"data"})
    if request.data is not None:
        parameters["data"] = [
            row.model_dump(mode="json", exclude_none=True) for row in request.data
        ]
    try:
        run = await start_training(parameters)
    except PrefectUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    ui = settings.prefect_ui_url.rstrip("/")
    return TrainingAccepted(
        flow_run_id=run.flow_run_id,
        flow_run_name=run.name,
        state=run.state,
        prefect_ui_url=f"{ui}/runs/flow-run/{run.flow_run_id}",
        deployment=run.deployment,
    )


@router.get("/status", response_model=TrainingStatus)
async def status(state: StateDep, _engine: EngineDep) -> dict[str, Any]:
    """Training runs, newest first: state, current trial and epoch, best validation loss."""
    found = await run_in_threadpool(live.training_status, state, 20)
    if found["status"] == "down":
        raise HTTPException(503, f"the metric store is unreachable: {found['problem']}")
    runs = found["runs"]
    return {
        "enabled": found["enabled"],
        "running": sum(r["state"] == "RUNNING" for r in runs),
        "runs": runs,
    }


# Listed so that /docs shows the prediction schemas the raw predict handler accepts and returns.
DOC_MODELS = (PredictionInstance, PredictionBatch, PredictionResponse, BatchPredictionResponse)
