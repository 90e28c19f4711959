"""The scaler contract: how many replicas a service runs now, and asking for another count.

The production contract is the Kubernetes scale subresource, as the HorizontalPodAutoscaler
uses it: `GET /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale` reads `status.replicas`
(the current count) and `PATCH` of the same path with `{"spec": {"replicas": N}}` asks for N.
A production scaler implements `Scaler` over that call; the cluster does the rest.

Two implementations live elsewhere, each in the layer that may hold it:
- the demo fleet's (`serving.fleet.scaler.FleetScaler`), which starts and stops replica
  processes on 127.0.0.1 and registers them in RelayCore;
- the scaling webhook (`monitoring.healing.executors.scaling_webhook`), which POSTs the
  recommendation to whoever scales; `WebhookScaler` below puts it behind this interface.

Imports only monitoring.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from monitoring.healing.actions import Action, ActionKind, ActionResult


@dataclass(frozen=True)
class ScaleResult:
    """What a scale request did: the counts before and after, and why it fell short if it did."""

    service: str
    before: int
    after: int
    ok: bool
    detail: str


class Scaler(Protocol):
    """Reads and sets a service's replica count (the Kubernetes scale subresource's two verbs)."""

    def current(self, service: str) -> int: ...

    def scale(self, service: str, replicas: int) -> ScaleResult: ...


class WebhookScaler:
    """The scaling webhook as a `Scaler`: the count comes from `count` (for instance the
    endpoints registered in RelayCore), and a scale is the webhook's POST; the receiver acts."""

    def __init__(
        self,
        url: str,
        count: Callable[[str], int],
        post: Callable[[Action], ActionResult] | None = None,
    ) -> None:
        from monitoring.healing.executors import scaling_webhook

        self.url, self.count = url, count
        self.post = post or scaling_webhook

    def current(self, service: str) -> int:
        return self.count(service)

    def scale(self, service: str, replicas: int) -> ScaleResult:
        before = self.count(service)
        action = Action(
            id=uuid.uuid4().hex,
            kind=ActionKind.SCALING_WEBHOOK,
            service=service,
            target=service,
            reason=f"scale {service} from {before} to {replicas} replicas",
            created_at=datetime.now(UTC),
            params={"url": self.url, "current": before, "desired": replicas},
        )
        result = self.post(action)
        # The receiver scales asynchronously: the count asked for is what the webhook accepted.
        return ScaleResult(
            service, before, replicas if result.ok else before, result.ok, result.detail
        )
