"""Performance analytics: request rates and latencies, predictions, and the model's real error."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from serving.ecosystem.analytics import instance_endpoints, instance_predictions, model_error
from serving.http import metrics
from serving.state import AppState, StateDep, StoreUnavailable

router = APIRouter(prefix="/api/v2/analytics", tags=["analytics"])


@router.get("/performance")
async def performance(state: StateDep) -> dict[str, Any]:
    """Per endpoint: rate and latency percentiles; predictions per version; error against the truth.

    With several workers the counts, rates and percentiles are the whole instance's (read from
    every worker's metrics; percentiles then come from the latency histogram's buckets), and
    `workers` lists each live worker. The error compares predictions that carried `service`
    and `timestamp` with the score the store's later samples give them (the share of the next
    minutes within the SLO); it covers the predictions of the worker that answers.
    """
    keyed = list(state.predictions.keyed)
    try:
        error = await run_in_threadpool(model_error, state.engine(), keyed)
    except StoreUnavailable as exc:
        error = {"compared": 0, "problem": str(exc)}
    found = await run_in_threadpool(_instance if metrics.multiprocess() else _local, state)
    return {**found, "model_error": error}


def _local(state: AppState) -> dict[str, Any]:
    batcher, endpoints = state.batcher, state.stats.report()
    return {
        "endpoints": endpoints,
        "predictions": {
            **state.predictions.summary(),
            "batches": batcher.batches,
            "rows_per_batch": round(batcher.rows / batcher.batches, 2) if batcher.batches else None,
        },
        "workers": [{"pid": os.getpid(), "requests": sum(e["requests"] for e in endpoints)}],
    }


def _instance(state: AppState) -> dict[str, Any]:
    state.refresh_gauges()
    found = metrics.samples(metrics.instance_registry())
    return {
        "endpoints": instance_endpoints(found),
        "predictions": instance_predictions(found),
        "workers": metrics.workers(found),
    }
