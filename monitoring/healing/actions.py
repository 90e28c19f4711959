"""Healing actions as records: their kinds, states, results, and the repository they live in.

The repository is a Protocol so that the audit table (SQL) can replace the in-memory one
without the engine changing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Mode(StrEnum):
    OFF = "off"
    DRY_RUN = "dry_run"
    CONFIRM = "confirm"
    AUTO = "auto"


class ActionKind(StrEnum):
    DRAIN_ENDPOINT = "drain_endpoint"
    RESTORE_ENDPOINT = "restore_endpoint"
    ROLLBACK_CHAMPION = "rollback_champion"
    SCALING_WEBHOOK = "scaling_webhook"
    RUN_COMMAND = "run_command"


class ActionState(StrEnum):
    PLANNED = "planned"
    DRY_RUN = "dry_run"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    RATE_LIMITED = "rate_limited"


# States that count as having acted (or as a faithful preview of acting) for the rate limit.
COUNTED_STATES = frozenset(
    {
        ActionState.DRY_RUN,
        ActionState.PENDING,
        ActionState.RUNNING,
        ActionState.SUCCEEDED,
        ActionState.FAILED,
        ActionState.ROLLED_BACK,
    }
)


@dataclass
class Action:
    """One healing action, from proposal to outcome; the row of the audit table."""

    id: str
    kind: ActionKind
    service: str
    target: str
    reason: str
    created_at: datetime
    started_by: str = "orchestrator"
    params: dict[str, Any] = field(default_factory=dict)
    state: ActionState = ActionState.PLANNED
    result: str | None = None
    undo: str | None = None
    updated_at: datetime | None = None
    approved_by: str | None = None
    undo_of: str | None = None
    mode: Mode | None = None  # the mode it was submitted in (None: an undo or a manual action)

    @property
    def replica(self) -> str | None:
        """The replica (RelayCore endpoint) a drain or restore moves; None: the service's."""
        return moved_replica(self.kind, self.params)


def moved_replica(kind: ActionKind, params: Mapping[str, object]) -> str | None:
    """The replica a drain or restore with these parameters moves; None for any other kind."""
    if kind not in (ActionKind.DRAIN_ENDPOINT, ActionKind.RESTORE_ENDPOINT):
        return None
    found = params.get("replica") or params.get("endpoint")
    return None if found is None else str(found)


@dataclass(frozen=True)
class ActionResult:
    """What an executor reports; `data` carries facts the undo needs (e.g. a prior version)."""

    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


Executor = Callable[[Action], ActionResult]


class ActionRepository(Protocol):
    """Where actions are kept: in memory for tests, the SQL audit table in the service."""

    def add(self, action: Action) -> None: ...

    def update(self, action: Action) -> None: ...

    def get(self, action_id: str) -> Action | None: ...

    def list(
        self,
        service: str | None = None,
        kind: ActionKind | None = None,
        since: datetime | None = None,
    ) -> list[Action]:
        """Matching actions, newest first."""
        ...


class InMemoryActionRepository:
    def __init__(self) -> None:
        self.rows: dict[str, Action] = {}

    def add(self, action: Action) -> None:
        if action.id in self.rows:
            raise KeyError(f"action {action.id} already exists")
        self.rows[action.id] = action

    def update(self, action: Action) -> None:
        if action.id not in self.rows:
            raise KeyError(f"unknown action {action.id}")
        self.rows[action.id] = action

    def get(self, action_id: str) -> Action | None:
        return self.rows.get(action_id)

    def list(
        self,
        service: str | None = None,
        kind: ActionKind | None = None,
        since: datetime | None = None,
    ) -> list[Action]:
        rows = [
            a
            for a in self.rows.values()
            if (service is None or a.service == service)
            and (kind is None or a.kind == kind)
            and (since is None or a.created_at >= since)
        ]
        return sorted(rows, key=lambda a: a.created_at, reverse=True)
