"""The model registry: versions with metrics and MLflow links; promotion and rollback by alias."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool

from serving.live import reload_soon
from serving.schemas import AliasChange, ModelList, ModelVersionInfo
from serving.state import AppState, StateDep

router = APIRouter(prefix="/api/v2/neuroweaver/models", tags=["neuroweaver"])

VersionPath = Path(pattern=r"^\d{1,18}$", description="a registered version number", examples=["3"])
AliasPath = Path(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", examples=["champion"])
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown version"},
    503: {"description": "the registry is down"},
}


@router.get("", response_model=ModelList, responses=_404)
async def list_versions(state: StateDep) -> ModelList:
    """Every registered version with its metrics, tags, aliases and MLflow UI link."""
    return await run_in_threadpool(_list, state)


@router.get("/{version}", response_model=ModelVersionInfo, responses=_404)
async def show_version(state: StateDep, version: str = VersionPath) -> ModelVersionInfo:
    """One version, with the evidence of its promotion decision."""
    return await run_in_threadpool(_one, state, version)


@router.put("/{version}/aliases/{alias}", response_model=AliasChange, responses=_404)
async def set_alias(
    state: StateDep, version: str = VersionPath, alias: str = AliasPath
) -> AliasChange:
    """Points an alias (e.g. champion) at a version; moving @champion changes what is served."""
    return await _move(state, version, alias, older_only=False)


@router.post("/{version}/promote", response_model=AliasChange, responses=_404)
async def promote(state: StateDep, version: str = VersionPath) -> AliasChange:
    """Makes this version the champion."""
    return await _move(state, version, state.settings.model_alias, older_only=False)


@router.post(
    "/{version}/rollback",
    response_model=AliasChange,
    responses={**_404, 409: {"description": "the version is not older than the champion"}},
)
async def rollback(state: StateDep, version: str = VersionPath) -> AliasChange:
    """Moves the champion back to an earlier version."""
    return await _move(state, version, state.settings.model_alias, older_only=True)


async def _move(state: AppState, version: str, alias: str, older_only: bool) -> AliasChange:
    change = await run_in_threadpool(_set_alias, state, version, alias, older_only)
    if alias == state.holder.alias:  # load it now rather than at the next poll
        reload_soon(state)
    return change


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _registry_call(call: Any, *args: Any) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return call(*args)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise HTTPException(404, exc.message) from None
        raise HTTPException(503, f"the MLflow registry failed: {exc.message}") from None
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(503, f"the MLflow registry is unreachable: {exc}") from None


def _set_alias(state: AppState, version: str, alias: str, older_only: bool) -> AliasChange:
    name, client = state.settings.model_name, _client()
    _registry_call(client.get_model_version, name, version)  # 404 for an unknown version
    previous = _alias_version(client, name, alias)
    if older_only and (previous is None or int(version) >= int(previous)):
        raise HTTPException(
            409, f"version {version} is not older than @{alias} (version {previous})"
        )
    _registry_call(client.set_registered_model_alias, name, alias, version)
    return AliasChange(name=name, alias=alias, version=version, previous_version=previous)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _list(state: AppState) -> ModelList:
    name, client = state.settings.model_name, _client()
    try:
        found = _registry_call(client.search_model_versions, f"name='{_quoted(name)}'")
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        found = []
    versions = sorted(found, key=lambda v: int(v.version), reverse=True)
    aliases = _aliases(client, name) if versions else {}
    infos = [_info(state, client, v, aliases) for v in versions]
    champion = aliases.get(state.settings.model_alias)
    serving = state.holder.current.version if state.holder.current else None
    return ModelList(
        name=name,
        alias=state.settings.model_alias,
        champion_version=champion,
        serving_version=serving,
        versions=infos,
    )


def _one(state: AppState, version: str) -> ModelVersionInfo:
    client = _client()
    found = _registry_call(client.get_model_version, state.settings.model_name, version)
    return _info(state, client, found, _aliases(client, state.settings.model_name))


def _aliases(client: Any, name: str) -> dict[str, str]:
    """alias -> version (search results do not carry aliases, the registered model does)."""
    model = _registry_call(client.get_registered_model, name)
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def _info(state: AppState, client: Any, version: Any, aliases: dict[str, str]) -> ModelVersionInfo:
    ui = state.settings.mlflow_ui_url.rstrip("/")
    serving = state.holder.current
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        aliases=sorted(a for a, v in aliases.items() if v == str(version.version)),
        serving=serving is not None and serving.version == str(version.version),
        created_at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        if version.creation_timestamp
        else None,
        run_id=version.run_id,
        metrics=_run_metrics(client, version.run_id),
        tags=dict(version.tags or {}),
        refused=state.holder.refused.get(str(version.version)),
        mlflow_ui_url=f"{ui}/#/models/{version.name}/versions/{version.version}",
    )


def _run_metrics(client: Any, run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    try:
        return dict(client.get_run(run_id).data.metrics)
    except Exception:  # a deleted run leaves the version without metrics, not without a listing
        return {}


def _quoted(name: str) -> str:
    return re.sub(r"'", "''", name)
