"""An alert as Alertmanager knows it: labels (its identity), annotations, start and end.

The fingerprint is a digest of the labels alone, as in Alertmanager, so sending the same
condition twice updates one alert and a cleared condition is the same labels with `endsAt`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CRITICAL, WARNING, INFO = "critical", "warning", "info"
WEBHOOK_VERSION = "1"


@dataclass(frozen=True)
class Alert:
    """One alert. `ends_at` None: firing until the condition clears; set: when it cleared (or, for
    an event such as a healing action, when it stops being news)."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str | None = None
    # What the alert is about ("anomaly:checkout:checkout-1"): a condition whose labels change
    # (its severity grew) resolves the alert it had before under the same key.
    key: str = field(default="", compare=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def firing(self, now: datetime) -> bool:
        return self.ends_at is None or self.ends_at > now


def labels(
    alertname: str, service: str, severity: str, replica: str | None = None, **extra: str
) -> dict[str, str]:
    """The label set; an empty replica is omitted, as Alertmanager treats an empty label as absent."""
    found = {"alertname": alertname, "service": service, "severity": severity, **extra}
    if replica:
        found["replica"] = replica
    return found


def fingerprint(label_set: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(sorted(label_set.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def postable(alert: Alert, now: datetime, lease: timedelta) -> dict[str, Any]:
    """Alertmanager API v2's postable alert. A firing alert carries `endsAt` = now + lease, as
    Prometheus does: Alertmanager keeps it active while it is re-sent, and resolves it on its own
    if AutoMatrix goes away; a cleared one carries the time it cleared."""
    ends = alert.ends_at if alert.ends_at is not None else now + lease
    body: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(ends),
    }
    if alert.generator_url:
        body["generatorURL"] = alert.generator_url
    return body


def webhook_body(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The generic webhook's JSON: the same postable alerts, and the format's version."""
    return {"version": WEBHOOK_VERSION, "alerts": alerts}
