"""The MLflow webhook: an alias moved in MLflow (its UI or API) is served at once, not at the next poll.

Register it in MLflow for the `model_version_alias.created` event with the secret in
`MLFLOW_WEBHOOK_SECRET`; `automatrix up` does this for its own MLflow server. A signed delivery
needs no API key: its signature is checked instead. Without a signature, the call is an
operator's "check the registry now" and needs the API key like any mutating request.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Request

from serving.ecosystem.live import reload_soon
from serving.neuroweaver.schemas import WebhookAnswer
from serving.neuroweaver.signatures import signature_problem
from serving.state import StateDep

router = APIRouter(prefix="/api/v2/neuroweaver", tags=["neuroweaver"])
ALIAS_ENTITY = "model_version_alias"


@router.post(
    "/mlflow-webhook",
    status_code=202,
    response_model=WebhookAnswer,
    responses={
        401: {"description": "a bad or stale signature; or, unsigned, a missing or wrong API key"},
        403: {"description": "a signed delivery while MLFLOW_WEBHOOK_SECRET is not set"},
        422: {"description": "a signed body that is not an MLflow event"},
    },
)
async def mlflow_webhook(
    request: Request,
    state: StateDep,
    x_mlflow_signature: Annotated[str | None, Header(description="v1,<base64 HMAC-SHA256>")] = None,
    x_mlflow_timestamp: Annotated[str | None, Header(description="Unix seconds")] = None,
    x_mlflow_delivery_id: Annotated[str | None, Header()] = None,
) -> WebhookAnswer:
    """Reloads @champion now when MLflow says the alias moved (or when an operator asks)."""
    if x_mlflow_signature is None:
        reload_soon(state)
        return WebhookAnswer(reloading=True, detail="checking the registry now")
    secret = state.settings.mlflow_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise HTTPException(403, "signed MLflow webhooks are off: set MLFLOW_WEBHOOK_SECRET")
    body = await request.body()
    problem = signature_problem(
        secret.get_secret_value(),
        body,
        x_mlflow_signature,
        x_mlflow_timestamp,
        x_mlflow_delivery_id,
        time.time(),
    )
    if problem is not None:
        raise HTTPException(401, problem)
    event = _event(body)
    if not state.deliveries.first_time(str(x_mlflow_delivery_id)):
        return WebhookAnswer(reloading=False, detail="this delivery was already handled")
    data = event.get("data") or {}
    if (
        event.get("entity") != ALIAS_ENTITY
        or data.get("name") != state.settings.model_name
        or data.get("alias") != state.settings.model_alias
    ):
        return WebhookAnswer(
            reloading=False,
            detail=f"not about {state.settings.model_name}"
            f"@{state.settings.model_alias}; nothing to do",
        )
    reload_soon(state)
    return WebhookAnswer(
        reloading=True,
        detail=f"@{data['alias']} moved to version {data.get('version')}; loading it",
    )


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(422, f"the body is not valid JSON: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("data", {}), dict):
        raise HTTPException(422, 'expected an MLflow event: {"entity", "action", "data": {...}}')
    return event
