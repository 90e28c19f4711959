"""A running fleet: replica processes and their RelayCore registrations, kept together.

Thread-safe: the runner, the chaos schedule and the scaler (called from healing) share one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from serving.fleet import processes
from serving.fleet.plan import (
    MAX_REPLICAS,
    SERVICES,
    ReplicaSpec,
    next_index,
    replica_name,
)
from serving.fleet.processes import ReplicaProcess
from serving.fleet.relay import RelayRegistry

DEFAULT_MEAN_MS = dict(SERVICES)


class Fleet:
    """Starts, registers, unregisters and stops replicas; `relay` None runs it unregistered."""

    def __init__(
        self,
        relay: RelayRegistry | None,
        *,
        ports: Callable[[int], list[int]] = processes.free_ports,
        seed: int | None = None,
        on_change: Callable[[list[ReplicaSpec]], None] | None = None,
    ) -> None:
        self.relay = relay
        self.on_change = on_change  # told the replicas after each change (a targets file)
        self.ports = ports
        self.seed = seed
        self._running: dict[str, ReplicaProcess] = {}
        self._lock = threading.RLock()

    def start(self, specs: list[ReplicaSpec]) -> None:
        """Starts every replica at once, waits for all, then registers each."""
        launched = [processes.launch(s, self._seed(i)) for i, s in enumerate(specs)]
        with self._lock:
            self._running.update({r.spec.name: r for r in launched})
        for replica in launched:
            processes.wait_ready(replica)
        if self.relay is not None:
            services = sorted({s.service for s in specs})
            self.relay.remove_stale(services, keep=[s.name for s in specs])
            for spec in specs:
                self.relay.register(spec)
        self._changed()

    def replicas(self, service: str | None = None) -> list[ReplicaSpec]:
        with self._lock:
            found = [r.spec for r in self._running.values()]
        return sorted(
            (s for s in found if service is None or s.service == service), key=lambda s: s.name
        )

    def add(self, service: str) -> ReplicaSpec:
        """One more replica of `service`, started, ready and registered."""
        with self._lock:
            current = self.replicas(service)
            if len(current) >= MAX_REPLICAS:
                raise ValueError(f"{service} already runs {MAX_REPLICAS} replicas, the most")
            mean = current[0].mean_ms if current else DEFAULT_MEAN_MS.get(service, 25.0)
            index = next_index(self._running, service)
            spec = ReplicaSpec(service, replica_name(service, index), self.ports(1)[0], mean)
            replica = processes.launch(spec, self._seed(len(self._running)))
            self._running[spec.name] = replica
        try:
            processes.wait_ready(replica)
        except processes.ReplicaFailed:
            self._forget([replica])
            raise
        if self.relay is not None:
            self.relay.register(spec)
        self._changed()
        return spec

    def remove(self, name: str) -> None:
        """Unregisters a replica first (RelayCore sends it nothing new), then stops it."""
        with self._lock:
            replica = self._running.get(name)
        if replica is None:
            raise KeyError(name)
        if self.relay is not None:
            self.relay.unregister(name)
        self._forget([replica])
        self._changed()

    def exited(self) -> list[ReplicaSpec]:
        """Replicas whose process has ended without being stopped."""
        with self._lock:
            return [r.spec for r in self._running.values() if not r.alive]

    def stop(self) -> None:
        """Unregisters every replica (best effort: the API may be gone) and stops them all."""
        with self._lock:
            running = list(self._running.values())
        if self.relay is not None:
            for replica in running:
                try:
                    self.relay.unregister(replica.spec.name)
                except Exception:  # stopping must finish even if the API went first
                    break
        self._forget(running)

    def _forget(self, replicas: list[ReplicaProcess]) -> None:
        processes.stop(replicas)
        with self._lock:
            for replica in replicas:
                self._running.pop(replica.spec.name, None)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.replicas())

    def _seed(self, offset: int) -> int | None:
        return None if self.seed is None else self.seed + offset
