"""Delivery edges: Alertmanager's API v2 and a generic JSON webhook, each a `Sink`.

One POST per sink carries every alert due for it. Whatever happens is recorded per alert
(`outbox.mark`): a sink that is down costs one failed request per run, is retried with
exponential backoff, and never stops the rest of the cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from monitoring.alerts import outbox
from monitoring.alerts.model import Alert, postable, webhook_body
from monitoring.config import AlertSettings

ALERTMANAGER, WEBHOOK = "alertmanager", "webhook"
# Post(url, json body, timeout) -> None, or raises with the reason.
Post = Callable[[str, Any, float], None]


@dataclass(frozen=True)
class Sink:
    name: str
    url: str
    body: Callable[[list[Alert], datetime], Any]
    refresh: bool  # re-send firing alerts before their endsAt lease runs out


@dataclass(frozen=True)
class SinkReport:
    sink: str
    sent: int
    error: str | None = None


def lease(settings: AlertSettings) -> timedelta:
    return timedelta(minutes=3 * settings.alert_resend_minutes)


def sinks(settings: AlertSettings) -> list[Sink]:
    """The configured sinks; none when neither URL is set (alerts are then only recorded)."""
    found: list[Sink] = []
    span = lease(settings)
    if settings.alertmanager_url:
        url = settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
        found.append(
            Sink(ALERTMANAGER, url, lambda a, now: [postable(x, now, span) for x in a], True)
        )
    if settings.alert_webhook_url:
        found.append(Sink(WEBHOOK, settings.alert_webhook_url, _webhook(span), False))
    return found


def _webhook(span: timedelta) -> Callable[[list[Alert], datetime], Any]:
    def body(alerts: list[Alert], now: datetime) -> Any:
        items = [
            postable(a, now, span)
            | {"status": "firing" if a.firing(now) else "resolved", "fingerprint": a.fingerprint}
            for a in alerts
        ]
        return webhook_body(items)

    return body


def http_post(url: str, body: Any, timeout: float) -> None:
    response = httpx.post(url, json=body, timeout=timeout)
    if not response.is_success:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")


def deliver(
    engine: Engine, sink: Sink, settings: AlertSettings, now: datetime, post: Post = http_post
) -> SinkReport:
    """Sends what is due for one sink and records the outcome of each alert."""
    alerts = outbox.due(engine, sink.name, now)
    if not alerts:
        return SinkReport(sink.name, 0)
    error = None
    try:
        post(sink.url, sink.body(alerts, now), settings.alert_timeout_s)
    except Exception as exc:  # any failure is this attempt's outcome, recorded and retried
        error = f"{type(exc).__name__}: {exc}"[:2000]
    backoff = (settings.alert_retry_initial_s, settings.alert_retry_max_s)
    outbox.mark(engine, sink.name, [a.fingerprint for a in alerts], error, now, backoff)
    return SinkReport(sink.name, 0 if error else len(alerts), error)


def deliver_all(
    engine: Engine, settings: AlertSettings, now: datetime, post: Post = http_post
) -> list[SinkReport]:
    return [deliver(engine, sink, settings, now, post) for sink in sinks(settings)]


def outbox_sinks(settings: AlertSettings) -> outbox.Sinks:
    found = sinks(settings)
    return outbox.Sinks(
        [s.name for s in found],
        [s.name for s in found if s.refresh],
        timedelta(minutes=settings.alert_resend_minutes),
    )
