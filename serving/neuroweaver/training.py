"""Starting a training as a real Prefect flow run, through the deployment when there is one."""

from __future__ import annotations

import contextvars
import functools
import gc
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEPLOYMENT = "neuroweaver-train/daily"


@dataclass(frozen=True)
class StartedRun:
    flow_run_id: str
    name: str | None
    state: str | None
    deployment: str | None


class PrefectUnavailable(RuntimeError):
    """The Prefect API did not answer; the caller answers 503."""


def run_tags() -> list[str]:
    """`api`, and `request-id:<id>` so that the run's logs and the API request are tied together."""
    from serving.http.logs import request_id_var

    request_id = request_id_var.get()
    return ["api"] if request_id is None else ["api", f"request-id:{request_id}"]


async def start_training(parameters: dict[str, Any]) -> StartedRun:
    """Creates the flow run and returns at once; the run itself goes on elsewhere."""
    from prefect.client.orchestration import get_client

    freeze_prefect()
    try:
        async with get_client() as client:
            if await _has_deployment(client):
                return await _via_deployment(client, parameters)
            return await _in_background(client, parameters)
    except PrefectUnavailable:
        raise
    except Exception as exc:  # httpx and Prefect raise many kinds when the server is down
        raise PrefectUnavailable(f"the Prefect API is unavailable: {exc}") from exc


@functools.cache
def freeze_prefect() -> None:
    """The API loads Prefect's ~500 modules only at its first training. Frozen like the rest of
    start-up's heap (serving/app.py), they stay out of the collector's full passes, which would
    otherwise walk them all: 50-60 ms pauses every ~10 s under RelayCore's load."""
    import flows.train  # noqa: F401  (with Prefect's flow engine, the rest of what a run loads)

    gc.freeze()


async def _has_deployment(client: Any) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        await client.read_deployment_by_name(DEPLOYMENT)
    except ObjectNotFound:
        return False
    return True


async def _via_deployment(client: Any, parameters: dict[str, Any]) -> StartedRun:
    """A worker serving the deployment picks the run up, as if started from the Prefect UI."""
    from prefect.deployments.flow_runs import arun_deployment

    run = await arun_deployment(
        DEPLOYMENT,
        client=client,
        parameters=parameters,
        timeout=0,
        as_subflow=False,
        tags=run_tags(),
    )
    return StartedRun(str(run.id), run.name, run.state_name, DEPLOYMENT)


async def _in_background(client: Any, parameters: dict[str, Any]) -> StartedRun:
    """No deployment (e.g. `automatrix serve` alone): this process runs the flow on a thread."""
    from flows.train import train_flow

    run = await client.create_flow_run(train_flow, parameters=parameters, tags=run_tags())
    context = contextvars.copy_context()  # carries Prefect's settings (the API URL) along
    thread = threading.Thread(
        target=context.run, args=(_run_flow, run, parameters), name=f"train-{run.id}", daemon=True
    )
    thread.start()
    return StartedRun(str(run.id), run.name, run.state_name, None)


def _run_flow(run: Any, parameters: dict[str, Any]) -> None:
    from prefect.flow_engine import run_flow

    from flows.train import train_flow

    try:
        run_flow(train_flow, flow_run=run, parameters=parameters, return_type="state")
    except BaseException:  # the flow run records its own failure in Prefect
        log.exception("training flow run %s failed", run.id)
