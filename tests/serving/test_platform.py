"""`automatrix up`'s parts that talk to a real Prefect server (the test harness)."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.schedules import CronSchedule

from flows.train import train_flow
from flows.train_capacity import train_capacity_flow
from serving.cli.platform import set_training_schedules

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


async def _deploy() -> list[UUID]:
    made = []
    for flow, name, cron in (
        (train_flow, "daily", "0 3 * * *"),
        (train_capacity_flow, "daily-capacity", "30 3 * * *"),
    ):
        deployment = await flow.ato_deployment(name=name, schedule=CronSchedule(cron=cron))
        made.append(await deployment.apply())
    return made


async def _paused(ids: list[UUID]) -> list[bool]:
    async with get_client() as client:
        return [bool((await client.read_deployment(i)).paused) for i in ids]


async def _delete(ids: list[UUID]) -> None:
    async with get_client() as client:
        for deployment_id in ids:
            await client.delete_deployment(deployment_id)


def test_training_disabled_pauses_both_training_schedules_and_enabled_resumes_them() -> None:
    ids = asyncio.run(_deploy())
    try:
        set_training_schedules(active=False)
        assert asyncio.run(_paused(ids)) == [True, True]
        set_training_schedules(active=True)
        assert asyncio.run(_paused(ids)) == [False, False]
    finally:
        asyncio.run(_delete(ids))
