"""The process edge: replica processes started, waited for and stopped, and free ports found."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import httpx

from serving.fleet.plan import HOST, FleetFailed, ReplicaSpec, replica_argv

READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0


class ReplicaFailed(FleetFailed):
    """A replica process exited or did not answer in time."""


@dataclass
class ReplicaProcess:
    spec: ReplicaSpec
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def free_ports(count: int) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that nothing listens on right now."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(p.getsockname()[1]) for p in probes]


def launch(spec: ReplicaSpec, seed: int | None = None) -> ReplicaProcess:
    """Starts a replica process, not yet waiting for it; it dies with this process."""
    argv = replica_argv(spec, os.getpid(), seed)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return ReplicaProcess(spec, process)


def wait_ready(replica: ReplicaProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Returns once the replica answers /health; raises ReplicaFailed if it exits or is late."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not replica.alive:
            raise ReplicaFailed(
                f"replica {replica.spec.name} exited with code {replica.process.returncode}"
                f" (is port {replica.spec.port} taken?)"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(replica.spec.base_url + "/health", timeout=1.0).is_success:
                return
        time.sleep(0.05)
    raise ReplicaFailed(f"replica {replica.spec.name} did not answer within {timeout_s:.0f} s")


def stop(replicas: list[ReplicaProcess], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to each, then SIGKILL to any still running after the grace period."""
    for replica in replicas:
        if replica.alive:
            replica.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for replica in replicas:
        try:
            replica.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait()
