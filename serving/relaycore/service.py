"""RelayCore in the API process: the router built from settings, its background work and its hooks.

`RelayCore` owns the Router, the HTTP transport and the delivery worker. It publishes breaker
events and periodic status to the app's event hub, and, for endpoints that name a service with
metrics in the store, feeds NeuroWeaver's predicted performance score to the router as a health
hint (or, without a model, a score derived from the service's latest error rate and latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from monitoring.store import durable
from routing import AdaptiveParams, BreakerEvent, Endpoint, Router, RouterConfig
from serving.ecosystem.events import EventHub
from serving.relaycore.delivery import DeliveryConfig, DeliveryWorker
from serving.relaycore.transport import HttpTransport
from serving.settings import RelayCoreSettings, ServingSettings

log = logging.getLogger(__name__)


class RelayCore:
    """The router, its transport and the durable delivery of one API process."""

    def __init__(
        self,
        settings: ServingSettings,
        relay: RelayCoreSettings,
        hub: EventHub,
        engine: Callable[[], Engine],
        model: Callable[[], Any] = lambda: None,
    ) -> None:
        self.settings = relay
        self.hub = hub
        self._engine = engine
        self._model = model
        self.transport = HttpTransport(
            connect_timeout_s=relay.connect_timeout_s,
            read_timeout_s=relay.read_timeout_s,
            max_response_bytes=relay.max_response_bytes,
            max_connections=relay.max_connections,
        )
        config = RouterConfig(
            max_attempts=relay.max_attempts,
            attempt_timeout_s=relay.read_timeout_s,
            default_deadline_s=relay.deadline_s,
            queue_capacity=relay.queue_capacity,
            reserve_share=relay.reserve_share,
        )
        self.router = Router(self.transport, policy=settings.relaycore_policy, config=config)
        for name, url in settings.relaycore_endpoints.items():
            self.router.register(name, url, max_concurrency=relay.max_concurrency)
        self._restore_endpoints()
        self.router.add_listener(self._on_breaker)
        self.delivery = DeliveryWorker(
            self.router,
            engine,
            DeliveryConfig(
                lease_s=relay.lease_s,
                backoff_s=relay.delivery_backoff_s,
                backoff_max_s=relay.delivery_backoff_max_s,
                concurrency=relay.delivery_concurrency,
                poll_s=relay.delivery_poll_s,
                retention_s=relay.retention_hours * 3600.0,
                purge_interval_s=relay.purge_interval_s,
            ),
        )
        self.adaptive_params = AdaptiveParams()
        self.optuna_storage: str | None = settings.optuna_storage
        self.optimizing = asyncio.Lock()
        self.last_optimization: dict[str, Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def engine(self) -> Engine:
        return self._engine()

    def _restore_endpoints(self) -> None:
        """Re-registers the endpoints added through the API before a restart."""
        try:
            saved = durable.saved_endpoints(self.engine())
        except Exception as exc:  # the store being down must not keep RelayCore from starting
            log.warning("cannot restore RelayCore endpoints: %s: %s", type(exc).__name__, exc)
            return
        for row in saved:
            try:
                self.router.register(
                    row.name, row.url, service=row.service, max_concurrency=row.max_concurrency
                )
            except Exception as exc:  # e.g. the same name now comes from RELAYCORE_ENDPOINTS
                log.warning("stored endpoint %r not restored: %s", row.name, exc)

    async def add_endpoint(
        self, name: str, url: str, service: str | None, max_concurrency: int | None
    ) -> Endpoint:
        """Registers an endpoint and stores it, so that it survives a restart."""
        endpoint = self.router.register(
            name,
            url,
            service=service,
            max_concurrency=max_concurrency or self.settings.max_concurrency,
        )
        try:
            await asyncio.to_thread(
                durable.save_endpoint,
                self.engine(),
                endpoint.name,
                endpoint.url,
                endpoint.service,
                endpoint.max_concurrency,
            )
        except Exception:
            self.router.remove(endpoint.name)  # not stored: do not pretend it will persist
            raise
        return endpoint

    async def remove_endpoint(self, name: str) -> Endpoint:
        """Unregisters an endpoint and deletes it from the store for good."""
        endpoint = self.router.remove(name)
        await asyncio.to_thread(durable.delete_endpoint, self.engine(), name)
        return endpoint

    def start_background(self) -> None:
        jobs: dict[str, Coroutine[Any, Any, None]] = {
            "relaycore-delivery": self.delivery.run(),
            "relaycore-hints": self._every(self.settings.hint_interval_s, self.refresh_hints),
            "relaycore-status": self._every(self.settings.status_interval_s, self._publish_status),
        }
        self._tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.aclose()

    def start(self) -> None:
        self.router.start()
        self.delivery.wake()

    def stop(self) -> None:
        self.router.stop()

    def set_adaptive_params(self, params: AdaptiveParams) -> None:
        self.adaptive_params = params
        self.router.set_adaptive_params(params)

    def _on_breaker(self, event: BreakerEvent) -> None:
        self.hub.publish(
            "breaker",
            {
                "endpoint": event.endpoint,
                "old": str(event.old),
                "new": str(event.new),
                "reason": event.reason,
            },
        )

    def status(self) -> dict[str, Any]:
        found = self.router.status().as_dict()
        found["delivery"] = {
            "in_flight": self.delivery.in_flight,
            "delivered": self.delivery.delivered,
            "problem": self.delivery.problem,
        }
        return found

    def component(self) -> dict[str, Any]:
        """The ecosystem's view: a one-line health summary."""
        status = self.router.status()
        open_ = [e.name for e in status.endpoints if e.breaker != "closed"]
        return {
            "status": "up" if status.running else "stopped",
            "policy": status.policy,
            "endpoints": len(status.endpoints),
            "breakers_not_closed": open_,
            "queue_depth": status.queue.depth,
            "routed": status.counters.routed,
        }

    async def _publish_status(self) -> None:
        if self.hub.subscriber_count:
            self.hub.publish("routing", self.status())

    async def _every(self, interval_s: float, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            with contextlib.suppress(Exception):
                await job()
            await asyncio.sleep(interval_s)

    async def refresh_hints(self) -> None:
        """Sets a health score on each endpoint whose service has recent metrics."""
        services = {e.service for e in self.router.endpoints() if e.service}
        if not services:
            return
        scores = await asyncio.to_thread(self._scores, sorted(services))
        for endpoint in self.router.endpoints():
            score = scores.get(endpoint.service or "")
            if score is not None:
                with contextlib.suppress(Exception):  # removed meanwhile
                    self.router.set_health(endpoint.name, score)

    def _scores(self, services: list[str]) -> dict[str, float]:
        from monitoring.samples import METRICS

        latest = latest_samples(self.engine(), services)
        if not latest:
            return {}
        loaded = self._model()
        names = sorted(latest)
        if loaded is not None:
            rows = np.array([[getattr(latest[n], m) for m in METRICS] for n in names])
            with contextlib.suppress(Exception):
                predicted = loaded.model.predict(rows)
                return {
                    n: float(np.clip(p, 0.0, 1.0)) for n, p in zip(names, predicted, strict=True)
                }
        return {n: metric_score(latest[n]) for n in names}


def metric_score(sample: Any) -> float:
    """Without a model: how far inside its objectives the service's latest minute was."""
    from monitoring.neuroweaver.labels import ERROR_SLO_PERCENT, LATENCY_SLO_MS

    errors = min(sample.error_rate / (2.0 * ERROR_SLO_PERCENT), 1.0)
    latency = min(sample.network_latency / (2.0 * LATENCY_SLO_MS), 1.0)
    return float(1.0 - max(errors, latency))


def latest_samples(engine: Engine, services: list[str]) -> dict[str, Any]:
    """Each service's newest sample from the last hour, by name."""
    from datetime import timedelta

    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from monitoring.store.metrics import read_samples
    from monitoring.store.tables import MetricSample, Service

    since = durable.now_utc() - timedelta(hours=1)
    with Session(engine) as session:
        newest = dict(
            session.execute(
                select(Service.name, func.max(MetricSample.timestamp))
                .join(Service)
                .where(Service.name.in_(services), MetricSample.timestamp >= since)
                .group_by(Service.name)
            ).all()
        )
        found: dict[str, Any] = {}
        for name, at in newest.items():
            rows = read_samples(session, start=at, services=[name])
            if rows:
                found[name] = rows[-1]
    return found
