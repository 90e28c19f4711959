"""The API's settings: the core settings (`monitoring.config`) plus HTTP, UI links and RelayCore."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from monitoring.config import Settings, cached, parse_pairs

Policy = Literal["round_robin", "least_request", "peak_ewma", "adaptive"]


class ServingSettings(Settings):
    """Every setting the API process reads, each with a safe default."""

    mlflow_webhook_secret: SecretStr | None = None  # signs MLflow's alias webhooks
    environment: Literal["development", "test", "staging", "production"] = "development"
    debug: bool = False
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
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
    # Shares live events and rate limits between API processes and workers (docs/api.md).
    redis_url: str | None = None
    # Peers whose X-Forwarded-For names the client (IPs or CIDRs); none: the peer is the client.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return [
                ip_network(item.strip(), strict=False) for item in value.split(",") if item.strip()
            ]
        except ValueError as exc:
            raise ValueError(f"expected IP addresses or CIDRs separated by commas: {exc}") from None

    @field_validator("relaycore_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        endpoints = parse_pairs(value, "http(s)://url")
        for name, url in endpoints.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"expected name=http(s)://url, got {name}={url!r}")
        return endpoints

    @model_validator(mode="after")
    def _production_is_locked_down(self) -> ServingSettings:
        if self.environment == "production":
            if self.api_key is None or not self.api_key.get_secret_value():
                raise ValueError("ENVIRONMENT=production requires API_KEY")
            if self.debug:
                raise ValueError("ENVIRONMENT=production refuses DEBUG=true")
        return self


class RelayCoreSettings(BaseSettings):
    """Timeouts, limits and delivery behaviour; each has a safe default."""

    model_config = SettingsConfigDict(env_prefix="RELAYCORE_", extra="ignore", env_file=".env")

    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    max_response_bytes: int = Field(default=1_000_000, gt=0)
    max_connections: int = Field(default=512, gt=0)
    max_concurrency: int = Field(default=32, gt=0)  # per endpoint
    queue_capacity: int = Field(default=1000, gt=0)
    # Share of the endpoints' slots that priorities below 5 leave free for urgent messages.
    reserve_share: float = Field(default=0.25, ge=0, lt=1)
    max_attempts: int = Field(default=3, gt=0)  # endpoints tried per message
    deadline_s: float = Field(default=30.0, gt=0)  # default deadline of a synchronous message
    # Durable (async) delivery.
    lease_s: float = Field(default=60.0, gt=0)  # a claim older than this is presumed dead
    delivery_attempts: int = Field(default=8, gt=0)
    delivery_backoff_s: float = Field(default=0.5, gt=0)
    delivery_backoff_max_s: float = Field(default=60.0, gt=0)
    delivery_concurrency: int = Field(default=64, gt=0)
    delivery_poll_s: float = Field(default=1.0, gt=0)
    # Delivered and failed messages are deleted this long after their last change.
    retention_hours: float = Field(default=72.0, gt=0)
    purge_interval_s: float = Field(default=3600.0, gt=0)
    # Health hints from the metric store and NeuroWeaver; status pushed to the live feed.
    hint_interval_s: float = Field(default=30.0, gt=0)
    status_interval_s: float = Field(default=2.0, gt=0)
    # The shared control plane: how often a process on SQLite reads the desired state's version
    # (PostgreSQL pushes changes with NOTIFY); false stops watching (the benchmark's "before").
    control_poll_s: float = Field(default=0.25, gt=0, le=60)
    control_shared: bool = True


@cached
def get_settings() -> ServingSettings:
    """The API process's settings, read once; `monitoring.config.reset()` forgets them."""
    return ServingSettings()


@cached
def get_relaycore_settings() -> RelayCoreSettings:
    """RelayCore's knobs, read once; `monitoring.config.reset()` forgets them."""
    return RelayCoreSettings()
