"""RelayCore in the API process: the router built from settings, its background work and its hooks.

`RelayCore` owns the Router, the HTTP transport, the delivery worker and the control plane: every
change to endpoints, drains, running, policy or tuning is written to the shared desired state
in the store and reaches every API process's router from there (`serving.relaycore.control`). It publishes breaker
events and periodic status to the app's event hub, and, for endpoints that name a service with
metrics in the store, feeds NeuroWeaver's predicted performance score to the router as a health
hint (or, without a model, a score derived from the service's latest error rate and latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from functools import partial
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitoring.store import control, durable
from monitoring.store.control import EndpointSpec
from routing import (
    AdaptiveParams,
    BreakerEvent,
    DuplicateEndpoint,
    Endpoint,
    Router,
    RouterConfig,
    UnknownEndpoint,
)
from serving.ecosystem.events import EventHub
from serving.relaycore.control import ControlPlane
from serving.relaycore.delivery import DeliveryConfig, DeliveryWorker
from serving.relaycore.policy import describe, follow, policy_holder
from serving.relaycore.transport import HttpTransport
from serving.settings import RelayCoreSettings, ServingSettings
from serving.state import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        configured = [
            EndpointSpec(name, url, None, relay.max_concurrency)
            for name, url in settings.relaycore_endpoints.items()
        ]
        for spec in configured:  # what routes if the store cannot be read at start
            self.router.register(spec.name, spec.url, max_concurrency=spec.max_concurrency)
        self.control = ControlPlane(
            self.router,
            engine,
            default_policy=settings.relaycore_policy,
            configured=configured,
            poll_s=relay.control_poll_s,
            on_change=self._on_change,
        )
        self.control.load_now()
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
        self.optuna_storage: str | None = settings.optuna_storage
        self.policy = policy_holder()  # relaycore-policy@champion, followed in the background
        self._policy_poll_s = settings.model_reload_interval
        self.optimizing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def engine(self) -> Engine:
        return self._engine()

    @property
    def adaptive_params(self) -> AdaptiveParams:
        return self.control.adaptive_params

    @property
    def last_optimization(self) -> dict[str, Any] | None:
        return self.control.state.last_optimization

    def desired_endpoints(self) -> list[EndpointSpec]:
        """The endpoints of the desired state (drained ones too), from the local copy."""
        return list(self.control.state.endpoints)

    # --- changes to the shared desired state: written to the store, then applied here -------

    async def _change(self, call: Callable[..., T], *args: Any) -> T:
        """Runs a store change, then brings this process's copy up to it before returning."""
        engine = self.engine()
        try:
            found = await asyncio.to_thread(call, engine, *args)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"the metric store is unreachable: {exc}"[:300]) from exc
        await self.control.refresh()
        return found

    async def add_endpoint(
        self, name: str, url: str, service: str | None, max_concurrency: int | None
    ) -> EndpointSpec:
        """Adds an endpoint to the desired state; raises InvalidEndpoint or DuplicateEndpoint."""
        endpoint = Endpoint(name, url, max_concurrency or self.settings.max_concurrency, service)
        spec = EndpointSpec(endpoint.name, endpoint.url, service, endpoint.max_concurrency)
        try:
            await self._change(control.add_endpoint, spec)
        except control.EndpointExists as exc:
            raise DuplicateEndpoint(str(exc)) from None
        return spec

    async def remove_endpoint(self, name: str) -> EndpointSpec:
        """Deletes an endpoint from the desired state for good; raises UnknownEndpoint."""
        try:
            spec, _ = await self._change(control.remove_endpoint, name)
        except control.NoSuchEndpoint:
            raise UnknownEndpoint(f"no endpoint named {name!r}") from None
        return spec

    async def set_drained(self, name: str, drained: bool) -> EndpointSpec:
        """Drains an endpoint (kept, sent nothing new) or puts it back; raises UnknownEndpoint."""
        try:
            spec, _ = await self._change(control.set_drained, name, drained)
        except control.NoSuchEndpoint:
            raise UnknownEndpoint(f"no endpoint named {name!r}") from None
        return spec

    async def set_running(self, running: bool) -> None:
        await self._change(partial(control.set_control, running=running))

    async def set_policy(self, policy: str) -> None:
        await self._change(partial(control.set_control, policy=policy))

    async def set_tuning(self, params: AdaptiveParams | None, report: dict[str, Any]) -> None:
        """Stores an optimization's summary, and its parameters if applied, for every process."""
        values: dict[str, Any] = {"last_optimization": report}
        if params is not None:
            values["adaptive_params"] = asdict(params)
        await self._change(partial(control.set_control, **values))

    async def apply_policy(self, params: AdaptiveParams) -> None:
        """Routes with a registered version's knobs here at once, and in every process through
        the store; if the store cannot be written, the version is tried again at the next poll."""
        self.router.set_adaptive_params(params)
        try:
            await self._change(partial(control.set_control, adaptive_params=asdict(params)))
        except Exception:
            self.policy.version = None
            raise

    def _on_change(self, changes: list[str]) -> None:
        if "running" in changes or any(c.startswith("+") for c in changes):
            self.delivery.wake()  # queued messages may have waited for this

    def start_background(self) -> None:
        jobs: dict[str, Coroutine[Any, Any, None]] = {
            "relaycore-control": self.control.run(),
            "relaycore-delivery": self.delivery.run(),
            "relaycore-hints": self._every(self.settings.hint_interval_s, self.refresh_hints),
            "relaycore-status": self._every(self.settings.status_interval_s, self._publish_status),
            "relaycore-policy": follow(self.policy, self.apply_policy, self._policy_poll_s),
        }
        if not self.settings.control_shared:  # the benchmark's "before": no watching
            jobs.pop("relaycore-control").close()
        self._tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.aclose()

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
        found["drained"] = [e.name for e in self.control.state.endpoints if e.drained]
        found["control"] = self.control.describe()
        found["policy_model"] = describe(self.policy)
        found["adaptive_params"] = asdict(self.adaptive_params)
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
