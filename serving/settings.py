"""One validated settings object, read once from the environment and cached."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

Policy = Literal["round_robin", "least_request", "peak_ewma", "adaptive"]


class Settings(BaseSettings):
    """Every setting AutoMatrix reads, each with a safe default (see DESIGN.md)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///data/automatrix.db"
    mlflow_tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    optuna_storage: str = "sqlite:///data/optuna.db"
    prefect_api_url: str | None = None
    model_name: str = Field(default="neuroweaver", min_length=1)
    model_alias: str = Field(default="champion", min_length=1)
    api_key: SecretStr | None = None
    mlflow_webhook_secret: SecretStr | None = None  # signs MLflow's alias webhooks (see README)
    environment: Literal["development", "test", "staging", "production"] = "development"
    debug: bool = False
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    model_save_path: Path = Path("mlruns/models")
    enable_ml_training: bool = True
    relaycore_policy: Policy = "adaptive"
    relaycore_endpoints: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    model_reload_interval: float = Field(default=10.0, gt=0)
    live_interval: float = Field(default=2.0, gt=0)  # seconds between live dashboard updates
    max_batch_rows: int = Field(default=10_000, gt=0)
    max_body_bytes: int = Field(default=8_000_000, gt=0)
    host: str = "127.0.0.1"
    api_port: int = Field(default=8000, gt=0, lt=65536)
    prefect_port: int = Field(default=4200, gt=0, lt=65536)
    mlflow_port: int = Field(default=5000, gt=0, lt=65536)
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    prefect_ui_url: str = "http://127.0.0.1:4200"
    log_format: Literal["json", "text"] = "json"
    # Training and the two optimisations: calls per minute per client and endpoint, and burst.
    rate_limit_per_minute: float = Field(default=6.0, gt=0)
    rate_limit_burst: int = Field(default=3, gt=0)

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

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("relaycore_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        endpoints: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, url = item.partition("=")
            if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"expected name=http(s)://url, got {item!r}")
            endpoints[name.strip()] = url.strip()
        return endpoints

    @model_validator(mode="after")
    def _production_is_locked_down(self) -> Settings:
        if self.environment == "production":
            if self.api_key is None or not self.api_key.get_secret_value():
                raise ValueError("ENVIRONMENT=production requires API_KEY")
            if self.debug:
                raise ValueError("ENVIRONMENT=production refuses DEBUG=true")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings()
