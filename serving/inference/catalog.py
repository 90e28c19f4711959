"""`GET /api/v2/models`: every model in the MLflow registry, its aliases, and whether the
Open Inference Protocol serves it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from monitoring.neuroweaver import registry
from serving.inference.api import ModelsDep
from serving.inference.schemas import LiveFigures, RegisteredModelInfo, RegisteredModelList

router = APIRouter(prefix="/api/v2/models", tags=["models"])


@router.get(
    "",
    response_model=RegisteredModelList,
    responses={503: {"description": "the MLflow registry is unreachable"}},
)
async def list_models(models: ModelsDep) -> RegisteredModelList:
    """Every registered model with its aliases (alias -> version), its latest version, and, for
    those served over the protocol, the version served and the live figures."""
    try:
        found = await run_in_threadpool(registry.list_models)
    except registry.RegistryUnreachable as exc:
        raise HTTPException(503, str(exc)) from None
    served = set(models.names())
    return RegisteredModelList(
        models=[_info(models, model, model.name in served) for model in found]
    )


def _info(
    models: ModelsDep, model: registry.RegisteredModelSummary, served: bool
) -> RegisteredModelInfo:
    return RegisteredModelInfo(
        name=model.name,
        aliases=model.aliases,
        latest_version=model.latest_version,
        description=model.description,
        served_over_oip=served,
        oip_path=f"/v2/models/{model.name}" if served else None,
        serving_version=models.get(model.name).current() if served else None,
        live=LiveFigures(**models.stats[model.name].snapshot()) if served else None,  # type: ignore[arg-type]
        shadow=model.shadow,
    )
