"""RelayCore's own knobs (RELAYCORE_* variables), beside the shared settings' policy and endpoints."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache
def get_relaycore_settings() -> RelayCoreSettings:
    """Read once; tests call `get_relaycore_settings.cache_clear()` after changing the env."""
    return RelayCoreSettings()
