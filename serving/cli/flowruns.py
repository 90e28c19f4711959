"""Ending `automatrix up`'s flow runs through the Prefect API, so that none is left Running."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun, StateType
    from prefect.types import DateTime


def cancel_in_flight(pool: str, wait_s: float = 10.0) -> list[str]:
    """Cancels the pool's running, pending and late runs, so that none is left Running in the UI
    once the worker is gone; the names of those cancelled. Running and pending runs go to
    Cancelling first, for the worker to end their processes; those not over within `wait_s` s,
    and the late ones (nothing runs them), are set Cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Cancelling

    active = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
    message = "automatrix up stopped"
    with get_client(sync_client=True) as client:
        late = _pool_runs(client, pool, [StateType.SCHEDULED], due_by=datetime.now(UTC))
        running = _pool_runs(client, pool, active)
        for run in running:
            client.set_flow_run_state(run.id, Cancelling(message=message), force=True)
        deadline = time.monotonic() + wait_s
        while running and time.monotonic() < deadline and _pool_runs(client, pool, active):
            time.sleep(0.5)
        for run in late + _pool_runs(client, pool, active):
            client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
    return [run.name for run in late + running]


def _pool_runs(
    client: SyncPrefectClient, pool: str, types: list[StateType], due_by: datetime | None = None
) -> list[FlowRun]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    runs = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)),
        expected_start_time=FlowRunFilterExpectedStartTime(before_=cast("DateTime", due_by))
        if due_by
        else None,
    )
    return client.read_flow_runs(
        flow_run_filter=runs, work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
    )
