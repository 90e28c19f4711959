"""The shared state the lifespan builds, and the typed dependencies handlers receive it through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.engine import Engine

from serving.ecosystem.analytics import PredictionLog, RequestStats
from serving.ecosystem.events import EventHub
from serving.http.metrics import Mode, WorkerGauges
from serving.neuroweaver.batching import MicroBatcher
from serving.neuroweaver.models import LoadedModel, ModelHolder
from serving.neuroweaver.shadow import ShadowRecorder
from serving.neuroweaver.signatures import RecentDeliveries
from serving.orchestrator.forecaster import ForecasterHolder, forecaster_holder
from serving.orchestrator.risk import RiskHolder, risk_holder
from serving.settings import ServingSettings

ComponentProbe = Callable[[], dict[str, Any]]


@dataclass
class AppState:
    """Everything one running API holds; built in `create_app`, started by the lifespan."""

    settings: ServingSettings
    holder: ModelHolder
    hub: EventHub
    batcher: MicroBatcher
    stats: RequestStats = field(default_factory=RequestStats)
    predictions: PredictionLog = field(default_factory=PredictionLog)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    components: dict[str, ComponentProbe] = field(default_factory=dict)
    started_at: float = 0.0
    store_problem: str | None = None
    deliveries: RecentDeliveries = field(default_factory=RecentDeliveries)
    forecaster: ForecasterHolder = field(default_factory=forecaster_holder)
    risk: RiskHolder = field(default_factory=risk_holder)
    shadow: ShadowRecorder | None = None  # with SHADOW_SHARE > 0, started by the lifespan

    def __post_init__(self) -> None:
        # The modes say how multiprocess mode (serving/http/metrics.py) joins the workers' values.
        gauges: tuple[tuple[str, str, Mode], ...] = (
            ("model_version", "the served model version (0 when none)", "livemax"),
            ("prediction_rows", "rows scored since start", "sum"),
            ("prediction_requests", "predict requests since start", "sum"),
            ("live_clients", "WebSocket and SSE clients connected", "livesum"),
            ("model_swaps", "models swapped in since start", "sum"),
        )
        self._gauges = {
            name: Gauge(f"automatrix_{name}", text, registry=self.registry, multiprocess_mode=mode)
            for name, text, mode in gauges
        }
        self.worker_gauges = WorkerGauges(self.registry)

    def refresh_gauges(self) -> None:
        """Sets the gauges from the live state (called on each scrape, so nothing is on a hot path)."""
        current = self.holder.current
        self._gauges["model_version"].set(float(current.version) if current else 0.0)
        self._gauges["prediction_rows"].set(self.predictions.rows)
        self._gauges["prediction_requests"].set(self.predictions.requests)
        self._gauges["live_clients"].set(self.hub.subscriber_count)
        self._gauges["model_swaps"].set(self.holder.swaps)
        self.worker_gauges.refresh(self)

    def register_component(self, name: str, probe: ComponentProbe) -> None:
        """Adds a component to the ecosystem status: `probe()` returns {"status": ..., ...}."""
        self.components[name] = probe

    @cached_property
    def _engine(self) -> Engine:
        from monitoring.store.engine import open_store

        return open_store(self.settings.database_url)

    def engine(self) -> Engine:
        """The migrated metric store engine; raises StoreUnavailable (503) when it cannot be opened."""
        try:
            return self._engine
        except Exception as exc:
            raise StoreUnavailable(f"the metric store is unreachable: {_short(exc)}") from exc


class StoreUnavailable(RuntimeError):
    """The metric store cannot be reached; handlers answer 503."""


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


# The dependencies that only read the state are `async def`: FastAPI runs a plain `def` one
# on the thread pool, a hop that costs more than the lookup. get_engine may open and migrate
# the store on its first call, so it stays on the pool.
async def get_state(request: Request) -> AppState:
    return request.app.state.automatrix  # type: ignore[no-any-return]


async def get_settings_dep(state: Annotated[AppState, Depends(get_state)]) -> ServingSettings:
    return state.settings


async def get_model(state: Annotated[AppState, Depends(get_state)]) -> LoadedModel:
    loaded = state.holder.current
    if loaded is None:
        raise HTTPException(503, f"no model is being served: {state.holder.problem}")
    return loaded


def get_engine(state: Annotated[AppState, Depends(get_state)]) -> Engine:
    try:
        return state.engine()
    except StoreUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


async def get_hub(state: Annotated[AppState, Depends(get_state)]) -> EventHub:
    return state.hub


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[ServingSettings, Depends(get_settings_dep)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
EngineDep = Annotated[Engine, Depends(get_engine)]
HubDep = Annotated[EventHub, Depends(get_hub)]
