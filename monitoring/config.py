"""The settings every layer reads: the stores, MLflow, Optuna, the served model, the orchestrator.

Each settings object is read from the environment once and cached. Serving extends `Settings`
with its HTTP settings (`serving.settings`); `reset()` forgets every cached object, for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from monitoring.healing.actions import Mode
from monitoring.healing.policy import CommandSpec, HealingPolicy

F = TypeVar("F", bound=Callable[..., Any])
_CACHES: list[Any] = []


def cached(read: F) -> F:
    """Caches a reader of settings or engines by its arguments; `reset()` forgets what it read."""
    wrapped = lru_cache(maxsize=None)(read)
    _CACHES.append(wrapped)
    return cast(F, wrapped)


def reset() -> None:
    """Forgets every cached settings object and store engine, so the next read sees the env."""
    for cache in _CACHES:
        cache.cache_clear()


def parse_pairs(text: str, what: str = "value") -> dict[str, str]:
    """`name=value,name=value` as a dict, as RELAYCORE_ENDPOINTS and SCALING_REPLICAS are given.

    Refuses an item without `=`, an empty name or value, and a name given twice: a repeated
    name is a typo, and silently keeping one of the two values would hide it.
    """
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (piece.strip() for piece in item.partition("="))
        if not sep or not name or not value:
            raise ValueError(f"expected name={what}, got {item!r}")
        if name in found:
            raise ValueError(f"{name!r} is given twice")
        found[name] = value
    return found


class Settings(BaseSettings):
    """What every layer reads, each with a safe default; `serving.settings` adds the HTTP side."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///data/automatrix.db"
    mlflow_tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    optuna_storage: str = "sqlite:///data/optuna.db"
    prefect_api_url: str | None = None
    model_name: str = Field(default="neuroweaver", min_length=1)
    model_alias: str = Field(default="champion", min_length=1)
    # The retention rule: beyond this many newest versions, those without an alias are archived.
    model_keep_versions: int = Field(default=10, ge=1)
    # The local cache of loaded model versions (one folder per version); not MLflow's artifacts.
    model_save_path: Path = Path("mlruns/models")
    enable_ml_training: bool = True
    # Shadow (docs/lifecycle.md): the share of keyed live predict requests the API files for
    # @challenger; 0 promotes an offline winner at once, above 0 it runs as @challenger first.
    shadow_share: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    shadow_min_labelled: int = Field(default=200, ge=10)
    shadow_max_labelled: int = Field(default=5000, ge=10)
    shadow_alpha: float = Field(default=0.05, gt=0, le=0.5)
    shadow_keep_hours: float = Field(default=48.0, gt=0, le=720)
    # Required on every mutating API call when set; the flows send it when they call the API.
    api_key: SecretStr | None = None
    # Ingestion (docs/prometheus.md). No INGEST_SOURCE: prometheus when PROMETHEUS_URL is set,
    # scrape when SCRAPE_TARGETS is, else the simulator. No mapping: deploy/prometheus-mapping.yaml.
    ingest_source: Literal["simulator", "prometheus", "scrape"] | None = None
    prometheus_url: str | None = None
    prometheus_mapping: Path | None = None
    # JSON, as Prometheus' static_configs: {"service": ["http://host:port", ...]}.
    scrape_targets: dict[str, list[str]] = Field(default_factory=dict)
    scrape_interval_s: float = Field(default=15.0, gt=0, le=300)

    @field_validator("database_url", "optuna_storage")
    @classmethod
    def _parsable_sql_url(cls, value: str) -> str:
        try:
            make_url(value)
        except Exception:  # sqlalchemy's text would repeat the URL, password included
            raise ValueError("not a SQLAlchemy database URL (expected dialect://...)") from None
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _parsable_tracking_uri(cls, value: str) -> str:
        if "://" not in value and not value.startswith(("/", ".")):
            raise ValueError(
                "expected a URI such as sqlite:///mlruns/mlflow.db or http://host:5000"
            )
        return value

    @model_validator(mode="after")
    def _shadow_bounds(self) -> Settings:
        if self.shadow_max_labelled < self.shadow_min_labelled:
            raise ValueError("SHADOW_MAX_LABELLED is below SHADOW_MIN_LABELLED")
        return self

    def scheduled_source(self) -> str:
        """The source a run without one reads: the simulator only where nothing else is set."""
        if self.ingest_source is not None:
            return self.ingest_source
        if self.prometheus_url:
            return "prometheus"
        return "scrape" if self.scrape_targets else "simulator"

    def artifact_root(self) -> str | None:
        """Where new experiments keep their artifacts when this process opens MLflow's database
        itself: `artifacts/` beside a SQLite file, else `mlruns/artifacts`. None for an MLflow
        server (http(s)), which chooses (its --artifacts-destination), or a file store."""
        uri = self.mlflow_tracking_uri
        scheme = uri.partition("://")[0].partition("+")[0]
        if scheme not in ("sqlite", "postgresql", "mysql", "mssql"):
            return None
        home = Path("mlruns")
        if scheme == "sqlite":
            home = Path(make_url(uri).database or "mlruns/mlflow.db").parent
        return (home / "artifacts").resolve().as_uri()


@cached
def get_settings() -> Settings:
    """The process-wide core settings; `reset()` forgets them."""
    return Settings()


class CommandSetting(BaseModel):
    argv: list[str] = Field(min_length=1)
    undo_argv: list[str] | None = None


class OrchestratorSettings(BaseSettings):
    """Every orchestrator setting, each with a safe default (healing is a dry run)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    healing_mode: Mode = Mode.DRY_RUN
    healing_rate_limit_minutes: float = Field(default=15.0, gt=0)
    # Where scaling recommendations are POSTed; none: no scaling action is ever proposed.
    healing_webhook_url: str | None = None
    # JSON: {"service": {"argv": [...], "undo_argv": [...]}}; nothing else is ever run.
    healing_commands: dict[str, CommandSetting] = Field(default_factory=dict)
    healing_command_timeout_s: float = Field(default=30.0, gt=0)
    # The API that holds RelayCore, for the flow's drain and restore (none: not available).
    orchestrator_api_url: str | None = None
    scaling_target_cpu: float = Field(default=70.0, gt=0, le=100)
    scaling_default_replicas: int = Field(default=2, ge=1)
    scaling_replicas: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    scaling_startup_minutes: float = Field(default=5.0, ge=0)
    scaling_min_replicas: int = Field(default=1, ge=1)
    scaling_max_replicas: int = Field(default=100, ge=1)
    # What one replica costs per hour, in any currency; 0: unknown, so no costs are given.
    scaling_price_per_replica_hour: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    anomaly_open_score: float = Field(default=0.9, gt=0, lt=1)
    anomaly_quiet_minutes: float = Field(default=15.0, gt=0)
    detector_warmup_hours: float = Field(default=72.0, gt=0)
    detector_first_lookback_hours: float = Field(default=24.0, gt=0)
    # Rows a series needs before an anomaly can open on it: a new replica is watched from its
    # tenth minute. Offline scoring (`automatrix detect`, the benchmarks) keeps the detector's 60.
    detector_min_history: int = Field(default=10, ge=2, le=4000)
    # Every this many seconds, each API process drains and restores replicas on its RelayCore's
    # live evidence (HEALING_MODE=auto only): faster than the next ingestion. 0: off.
    healing_watch_seconds: float = Field(default=0.0, ge=0, le=3600)
    forecast_horizon_minutes: int = Field(default=60, ge=5, le=10_080)
    risk_horizon_minutes: int = Field(default=30, ge=1, le=1440)
    # The drift watch: the champion's inputs over the last DRIFT_WINDOW_MINUTES against the
    # reference profile logged with it; PSI above the threshold emits automatrix.model.drift,
    # at most once per DRIFT_COOLDOWN_HOURS per version.
    drift_psi_threshold: float = Field(default=0.25, gt=0, allow_inf_nan=False)
    drift_window_minutes: float = Field(default=60.0, gt=0, le=10_080)
    drift_min_rows: int = Field(default=50, ge=10)
    drift_cooldown_hours: float = Field(default=6.0, ge=0, le=720)

    @field_validator("scaling_replicas", mode="before")
    @classmethod
    def _split_replicas(cls, value: object) -> object:
        """`name=3,name=5`; pydantic then reads each count as an integer."""
        return parse_pairs(value, "replicas") if isinstance(value, str) else value

    def replicas(self, service: str) -> int:
        return self.scaling_replicas.get(service, self.scaling_default_replicas)

    def healing_policy(self) -> HealingPolicy:
        commands = {
            name: CommandSpec(tuple(c.argv), tuple(c.undo_argv) if c.undo_argv else None)
            for name, c in self.healing_commands.items()
        }
        return HealingPolicy(
            mode=self.healing_mode,
            rate_limit=timedelta(minutes=self.healing_rate_limit_minutes),
            webhook_url=self.healing_webhook_url,
            commands=commands,
        )


@cached
def get_orchestrator_settings() -> OrchestratorSettings:
    """The orchestrator's settings, read once; `reset()` forgets them."""
    return OrchestratorSettings()


class AlertSettings(BaseSettings):
    """Where alerts go and how hard delivery tries (docs/alerts.md); no sink: recorded only."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Alertmanager's base URL; alerts are POSTed to {ALERTMANAGER_URL}/api/v2/alerts.
    alertmanager_url: str | None = None
    # Any URL that takes a JSON POST: {"version": "1", "alerts": [...]}.
    alert_webhook_url: str | None = None
    alert_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # A failed delivery waits initial * 2^(attempts - 1) seconds, at most max, then is retried.
    alert_retry_initial_s: float = Field(default=30.0, gt=0)
    alert_retry_max_s: float = Field(default=900.0, gt=0)
    # A firing alert is re-sent to Alertmanager this often (its endsAt lease is three times it).
    alert_resend_minutes: float = Field(default=5.0, gt=0)
    # How long an event (a healing action, a training) stays an active alert.
    alert_event_minutes: float = Field(default=60.0, gt=0)
    alert_risk_threshold: float = Field(default=0.8, gt=0, le=1)


@cached
def get_alert_settings() -> AlertSettings:
    """The alert settings, read once; `reset()` forgets them."""
    return AlertSettings()
