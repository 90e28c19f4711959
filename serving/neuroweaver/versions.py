"""The model registry: versions with metrics and MLflow links; promotion and rollback by alias."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool

from monitoring.neuroweaver import registry
from serving.ecosystem.live import reload_soon
from serving.neuroweaver.schemas import AliasChange, ModelList, ModelVersionInfo
from serving.state import AppState, StateDep

T = TypeVar("T")
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


def _answer(call: Callable[..., T], *args: Any) -> T:
    """One registry call, its errors as the API's: 404 for an unknown thing, 503 when down."""
    try:
        return call(*args)
    except registry.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except registry.RegistryUnreachable as exc:
        raise HTTPException(503, str(exc)) from None


def _set_alias(state: AppState, version: str, alias: str, older_only: bool) -> AliasChange:
    name = state.settings.model_name
    _answer(registry.get_version, name, version)  # 404 for an unknown version
    previous = registry.alias_version(name, alias)
    if older_only and (previous is None or int(version) >= int(previous)):
        raise HTTPException(
            409, f"version {version} is not older than @{alias} (version {previous})"
        )
    _answer(registry.set_alias, name, alias, version)
    return AliasChange(name=name, alias=alias, version=version, previous_version=previous)


def _list(state: AppState) -> ModelList:
    name = state.settings.model_name
    versions = _answer(registry.list_versions, name)
    aliases = _answer(registry.aliases, name) if versions else {}
    infos = [_info(state, v, aliases) for v in versions]
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
    name = state.settings.model_name
    found = _answer(registry.get_version, name, version)
    return _info(state, found, _answer(registry.aliases, name))


def _info(state: AppState, version: Any, aliases: dict[str, str]) -> ModelVersionInfo:
    ui = state.settings.mlflow_ui_url.rstrip("/")
    serving = state.holder.current
    created = version.creation_timestamp
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        aliases=sorted(a for a, v in aliases.items() if v == str(version.version)),
        serving=serving is not None and serving.version == str(version.version),
        created_at=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        run_id=version.run_id,
        metrics=registry.run_metrics(version.run_id),
        tags=dict(version.tags or {}),
        refused=state.holder.refused.get(str(version.version)),
        mlflow_ui_url=f"{ui}/#/models/{version.name}/versions/{version.version}",
    )
