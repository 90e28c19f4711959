"""The ecosystem's state as one document: components, model, store, training, live series."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitoring.samples import METRICS
from serving.state import AppState

log = logging.getLogger(__name__)
SERIES_WINDOW = timedelta(hours=1)
MAX_SERVICES = 24


def model_status(state: AppState) -> dict[str, Any]:
    holder, loaded = state.holder, state.holder.current
    return {
        "status": "up" if loaded else "down",
        "name": holder.name,
        "alias": holder.alias,
        "version": loaded.version if loaded else None,
        "loaded_at": loaded.loaded_at if loaded else None,
        "problem": holder.problem,
        "swaps": holder.swaps,
        "refused": dict(holder.refused),
        "last_check": holder.last_check,
    }


def store_status(state: AppState) -> dict[str, Any]:
    """Blocking: asks the store for its size and last ingestion."""
    from monitoring.store.ingestion import last_run
    from monitoring.store.tables import MetricSample, Service

    try:
        engine = state.engine()
        with Session(engine) as session:
            services = session.scalar(select(func.count()).select_from(Service)) or 0
            latest = session.scalar(select(func.max(MetricSample.timestamp)))
        run = last_run(engine)
    except Exception as exc:
        return {"status": "down", "problem": f"the metric store is unreachable: {_first_line(exc)}"}
    ingestion = (
        None
        if run is None
        else {
            "source": run.source,
            "accepted": run.accepted,
            "rejected": run.rejected,
            "finished_at": run.finished_at.isoformat(),
        }
    )
    return {
        "status": "up",
        "services": services,
        "latest_sample": latest.isoformat() if latest else None,
        "last_ingestion": ingestion,
    }


def training_status(state: AppState, limit: int = 5) -> dict[str, Any]:
    from monitoring.store import progress

    try:
        runs = progress.recent(state.engine(), limit=limit)
    except Exception as exc:
        return {
            "status": "down",
            "enabled": state.settings.enable_ml_training,
            "problem": _first_line(exc),
            "runs": [],
        }
    return {
        "status": "up" if state.settings.enable_ml_training else "disabled",
        "enabled": state.settings.enable_ml_training,
        "runs": [run_dict(state, run) for run in runs],
    }


def run_dict(state: AppState, run: Any) -> dict[str, Any]:
    ui = state.settings.prefect_ui_url.rstrip("/")
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "state": run.state,
        "trial": run.trial,
        "n_trials": run.n_trials,
        "epoch": run.epoch,
        "best_loss": run.best_loss,
        "model_version": run.model_version,
        "message": run.message,
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "prefect_ui_url": f"{ui}/runs/flow-run/{run.flow_run_id}" if run.flow_run_id else None,
    }


def components(state: AppState) -> dict[str, Any]:
    """Blocking: every component's state, including those other parts registered."""
    found: dict[str, Any] = {
        "api": {"status": "up", "uptime_s": round(time.time() - state.started_at, 1)},
        "model": model_status(state),
        "store": store_status(state),
        "training": training_status(state),
        "live_feed": {
            "status": "up",
            "clients": state.hub.subscriber_count,
            "dropped_clients": state.hub.dropped_clients,
        },
    }
    for name, probe in state.components.items():
        try:
            found[name] = probe()
        except Exception as exc:  # one broken probe must not hide the others
            found[name] = {"status": "down", "problem": _first_line(exc)}
    return found


def overview(state: AppState) -> dict[str, Any]:
    """Blocking: the ecosystem in one document (what /api/v2/ecosystem/status returns)."""
    found = components(state)
    return {
        "status": "ok"
        if found["model"]["status"] == "up" and found["store"]["status"] == "up"
        else "degraded",
        "model_version": found["model"]["version"],
        "last_ingestion": found["store"].get("last_ingestion"),
        "last_training": (found["training"]["runs"] or [None])[0],
        "predictions": state.predictions.summary(),
        "components": found,
    }


def series(state: AppState) -> dict[str, dict[str, list[float]]]:
    """Blocking: per service, the last hour of data in the store (times in epoch seconds)."""
    from monitoring.store.metrics import read_samples

    try:
        with Session(state.engine()) as session:
            from monitoring.store.metrics import latest_timestamp

            latest = latest_timestamp(session)
            if latest is None:
                return {}
            samples = read_samples(session, start=latest - SERIES_WINDOW)
    except Exception:
        return {}
    out: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        if sample.service not in out and len(out) >= MAX_SERVICES:
            continue
        series_ = out.setdefault(sample.service, {"t": [], **{m: [] for m in METRICS}})
        series_["t"].append(sample.timestamp.timestamp())
        for metric in METRICS:
            series_[metric].append(getattr(sample, metric))
    return out


def snapshot(state: AppState) -> dict[str, Any]:
    """Blocking: what a live client receives, at connect and at every tick."""
    return {
        **overview(state),
        "series": series(state),
        "anomalies": state.hub.recent("anomaly")[:50],
        "routing": state.hub.recent("breaker")[:20] + state.hub.recent("routing")[:20],
    }


async def tick(state: AppState, interval: float) -> None:
    """Publishes a snapshot every `interval` seconds while anyone listens, and training changes."""
    last_training: Any = None
    while True:
        await asyncio.sleep(interval)
        if state.hub.subscriber_count == 0:
            continue
        try:
            current = await asyncio.to_thread(snapshot, state)
        except Exception:
            log.exception("could not build the live snapshot")
            continue
        try:
            last_training = _publish(state, current, last_training)
        except Exception:  # the ticker must outlive any one bad snapshot
            log.exception("could not publish the live snapshot")


def _publish(state: AppState, current: dict[str, Any], last_training: Any) -> Any:
    runs = [
        (r["id"], r["state"], r["trial"], r["epoch"], r["best_loss"])
        for r in current["components"]["training"]["runs"]
    ]
    if last_training is not None and runs != last_training:
        state.hub.publish("training", {"runs": current["components"]["training"]["runs"]})
    state.hub.publish("snapshot", current)
    return runs


_RELOADS: set[asyncio.Task[None]] = set()  # referenced until done, so none is collected midway


def reload_soon(state: AppState) -> None:
    """Starts `reload_champion` in the background (after a promotion, or on MLflow's webhook)."""
    task = asyncio.get_running_loop().create_task(reload_champion(state))
    _RELOADS.add(task)
    task.add_done_callback(_RELOADS.discard)


async def reload_champion(state: AppState) -> None:
    """Checks the alias now (off the loop) and announces a swap; the poller does the same later."""
    loaded = await asyncio.to_thread(state.holder.reload)
    if loaded is not None:
        announce_swap(state, loaded)


def announce_swap(state: AppState, loaded: Any) -> None:
    """Tells live clients that a new champion answers from now on."""
    state.hub.publish(
        "champion",
        {
            "name": loaded.name,
            "version": loaded.version,
            "alias": loaded.alias,
            "loaded_at": loaded.loaded_at,
        },
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
