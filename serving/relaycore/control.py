"""RelayCore's control plane in one API process: a local copy of the shared desired state, kept
up to date by watching the store's version, and applied to this process's router.

The desired state (endpoints and drains, running, policy, tuned parameters) lives in the store
(`monitoring.store.control`); every change bumps its version. A process learns of a change from
PostgreSQL's `LISTEN relaycore_control` when the store is PostgreSQL, and by reading the version
every `RELAYCORE_CONTROL_POLL_S` otherwise (SQLite), reads the whole state only when the version
moved, and applies it to its router on the event loop. Requests read the router and the local
copy, never the store. What each process learns (latency estimates, in-flight counts, breakers)
stays its own: an endpoint that stays desired keeps its statistics across changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from monitoring.store import control
from monitoring.store.control import DesiredState, EndpointSpec
from routing import AdaptiveParams, Router

log = logging.getLogger(__name__)
NOTIFY_FALLBACK_S = (
    1.0  # with LISTEN, the version is still read this often: a lost notice costs 1 s
)
RETRY_S = 1.0  # after the store failed


def params_of(found: dict[str, Any] | None) -> AdaptiveParams | None:
    """Stored parameters as AdaptiveParams; keys this version does not know are ignored."""
    if found is None:
        return None
    known = {f.name for f in dataclasses.fields(AdaptiveParams)}
    return AdaptiveParams(**{k: v for k, v in found.items() if k in known})


def apply(
    router: Router, before: DesiredState, wanted: DesiredState, default_policy: str
) -> list[str]:
    """Makes the router, which matched `before`, match `wanted`; returns what changed."""
    changes: list[str] = []
    live = {spec.name: spec for spec in wanted.endpoints if not spec.drained}
    for endpoint in router.endpoints():
        spec = live.get(endpoint.name)
        current = (endpoint.url, endpoint.service, endpoint.max_concurrency)
        if spec is None or (spec.url, spec.service, spec.max_concurrency) != current:
            router.remove(endpoint.name)
            changes.append(f"-{endpoint.name}")
    present = {e.name for e in router.endpoints()}
    for spec in live.values():
        if spec.name not in present:
            try:
                router.register(
                    spec.name, spec.url, service=spec.service, max_concurrency=spec.max_concurrency
                )
                changes.append(f"+{spec.name}")
            except Exception as exc:  # a row this version cannot route to: skip it, say so
                log.warning("desired endpoint %r not applied: %s", spec.name, exc)
    changes += _apply_control(router, before, wanted, default_policy)
    return changes


def _apply_control(
    router: Router, before: DesiredState, wanted: DesiredState, default_policy: str
) -> list[str]:
    changes: list[str] = []
    if wanted.adaptive_params != before.adaptive_params:
        router.set_adaptive_params(params_of(wanted.adaptive_params) or AdaptiveParams())
        changes.append("adaptive_params")
    policy = wanted.policy or default_policy
    if router.policy.name != policy:
        router.set_policy(policy)
        changes.append(f"policy={policy}")
    if router.running != wanted.running:
        (router.start if wanted.running else router.stop)()
        changes.append("running" if wanted.running else "stopped")
    return changes


class ControlPlane:
    """This process's copy of the desired state, and the task that keeps it current."""

    def __init__(
        self,
        router: Router,
        engine: Callable[[], Engine],
        *,
        default_policy: str,
        configured: list[EndpointSpec],
        poll_s: float,
        on_change: Callable[[list[str]], None] = lambda _changes: None,
    ) -> None:
        self.router = router
        self._engine = engine
        self.default_policy = default_policy
        self.configured = configured  # RELAYCORE_ENDPOINTS, put into the store once it answers
        self.poll_s = poll_s
        self.on_change = on_change
        self.state = DesiredState(0, True, None, None, None, tuple(configured))
        self.version = -1  # nothing read from the store yet
        self.watch = "poll"
        self.problem: str | None = None
        self._seeded = False
        self._lock = asyncio.Lock()

    # --- reading the store -----------------------------------------------------------------

    def load_now(self) -> None:
        """At start, before serving: seed and read the store once (its being down is survived)."""
        try:
            self._seed()
            self._set(control.desired(self._engine()))
        except Exception as exc:
            self._failed(exc)

    def _seed(self) -> None:
        if not self._seeded:
            control.seed_endpoints(self._engine(), self.configured)
            self._seeded = True

    def _set(self, wanted: DesiredState) -> None:
        if wanted.version < self.version:
            return  # an older read finishing after a newer one
        changes = apply(self.router, self.state, wanted, self.default_policy)
        self.state, self.version, self.problem = wanted, wanted.version, None
        if changes:
            log.info("RelayCore desired state v%d applied: %s", wanted.version, ", ".join(changes))
            self.on_change(changes)

    def _failed(self, exc: Exception) -> None:
        self.problem = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("RelayCore control plane: %s", self.problem)

    async def refresh(self, known: int | None = None) -> None:
        """Reads the desired state if its version moved past ours (or past `known`) and applies it."""
        async with self._lock:
            if not self._seeded:
                await asyncio.to_thread(self._seed)
            engine = self._engine()
            if known is None:
                known = await asyncio.to_thread(control.version, engine)
            if known != self.version:
                self._set(await asyncio.to_thread(control.desired, engine))

    # --- watching ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Keeps the copy current until cancelled: LISTEN on PostgreSQL, a version poll elsewhere."""
        while True:
            try:
                engine = self._engine()
                if engine.dialect.name == "postgresql":
                    await self._listen(engine)
                else:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store went away: keep serving the copy, try again
                self._failed(exc)
                await asyncio.sleep(RETRY_S)

    async def _poll(self) -> None:
        self.watch = "poll"
        while True:
            await self.refresh()
            await asyncio.sleep(self.poll_s)

    async def _listen(self, engine: Engine) -> None:
        import psycopg

        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
            await listener.execute(f"LISTEN {control.CHANNEL}")
            self.watch = "listen"
            await self.refresh()  # whatever changed before the LISTEN took effect
            while True:
                # Ends at the first notice or after the fallback, whichever comes first.
                async for _notice in listener.notifies(timeout=NOTIFY_FALLBACK_S, stop_after=1):
                    pass
                await self.refresh()

    @property
    def adaptive_params(self) -> AdaptiveParams:
        return params_of(self.state.adaptive_params) or AdaptiveParams()

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "watch": self.watch, "problem": self.problem}
