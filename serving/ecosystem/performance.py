"""Performance analytics: request rates and latencies, predictions, and the model's real error."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from serving.ecosystem.analytics import model_error
from serving.state import StateDep, StoreUnavailable

router = APIRouter(prefix="/api/v2/analytics", tags=["analytics"])


@router.get("/performance")
async def performance(state: StateDep) -> dict[str, Any]:
    """Per endpoint: rate and latency percentiles; predictions per version; error against the truth.

    The error compares predictions that carried `service` and `timestamp` with the score the
    store's later samples give them (the share of the next minutes within the SLO).
    """
    keyed = list(state.predictions.keyed)
    try:
        error = await run_in_threadpool(model_error, state.engine(), keyed)
    except StoreUnavailable as exc:
        error = {"compared": 0, "problem": str(exc)}
    return {
        "endpoints": state.stats.report(),
        "predictions": {
            **state.predictions.summary(),
            "batches": state.batcher.batches,
            "rows_per_batch": round(state.batcher.rows / state.batcher.batches, 2)
            if state.batcher.batches
            else None,
        },
        "model_error": error,
    }
