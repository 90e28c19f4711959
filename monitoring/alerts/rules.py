"""Conditions to alerts, pure: each rule takes what the orchestrator knows and says, per key,
which alert is firing for it (or None: the condition is clear, so an alert it had resolves).

A key a rule does not return was not evaluated (its input was unknown this time), so nothing is
resolved on its behalf.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from monitoring.alerts.model import CRITICAL, INFO, WARNING, Alert, labels
from monitoring.assess.failure import FailureRisk
from monitoring.healing.actions import Action, ActionState
from monitoring.healing.policy import ModelHealth

Evaluated = tuple[str, Alert | None]
ANOMALY_SEVERITY = {"critical": CRITICAL, "high": WARNING, "medium": WARNING, "low": INFO}
# Actions that did (or previewed, or wait for) something; a rate-limited proposal did nothing.
ALERTED_ACTIONS = frozenset(
    {
        ActionState.DRY_RUN,
        ActionState.PENDING,
        ActionState.SUCCEEDED,
        ActionState.FAILED,
        ActionState.ROLLED_BACK,
    }
)


@dataclass(frozen=True)
class AnomalyFact:
    """The latest anomaly of one service (or one replica of it)."""

    service: str
    replica: str | None
    metrics: tuple[str, ...]
    start: datetime
    end: datetime
    score: float
    severity: str
    open: bool


@dataclass(frozen=True)
class TrainingFact:
    """One finished training; `promoted` None when its promotion decision cannot be read."""

    run_id: str
    model: str
    failed: bool
    version: str | None
    message: str
    finished_at: datetime
    promoted: bool | None


def link(base: str | None, path: str) -> str | None:
    return None if not base else base.rstrip("/") + path


def anomaly_alert(fact: AnomalyFact, base: str | None = None) -> Evaluated:
    key = f"anomaly:{fact.service}:{fact.replica or ''}"
    where = fact.service + (f" replica {fact.replica}" if fact.replica else "")
    metrics = ", ".join(fact.metrics) or "its metrics"
    alert = Alert(
        labels(
            "ServiceAnomaly",
            fact.service,
            ANOMALY_SEVERITY.get(fact.severity, WARNING),
            fact.replica,
        ),
        {
            "summary": f"{where}: unusual {metrics}",
            "description": (
                f"anomaly score {fact.score:.3f} ({fact.severity}) on {metrics} from "
                f"{fact.start.isoformat()} to {fact.end.isoformat()}"
                + ("" if fact.open else "; closed after a quiet spell")
            ),
        },
        fact.start,
        None if fact.open else fact.end,
        link(base, f"/api/v2/ai/anomalies?service={quote(fact.service)}"),
        key,
    )
    return key, alert


def risk_alert(
    service: str,
    risk: FailureRisk | None,
    threshold: float,
    horizon_minutes: int,
    now: datetime,
    base: str | None = None,
) -> list[Evaluated]:
    """Firing while the risk is at or above the threshold; [] when the risk is unknown."""
    key = f"risk:{service}"
    if risk is None:
        return []
    if risk.risk < threshold:
        return [(key, None)]
    top = sorted(risk.factors, key=lambda f: -f.contribution)[:3]
    factors = "; ".join(f"{f.name} {f.value:.3g} (+{f.contribution:.2f}: {f.detail})" for f in top)
    alert = Alert(
        labels("HighFailureRisk", service, WARNING),
        {
            "summary": f"{service}: failure risk {risk.risk:.2f} in the next {horizon_minutes} min",
            "description": f"risk {risk.risk:.3f} >= threshold {threshold:.2f}; factors: {factors}",
        },
        now,
        None,
        link(base, f"/api/v2/ai/insights/{quote(service)}"),
        key,
    )
    return [(key, alert)]


def model_alert(
    health: ModelHealth | None, ratio_limit: float, now: datetime, base: str | None = None
) -> list[Evaluated]:
    """Firing while the served model's recent error exceeds its promotion error by the limit."""
    if health is None:
        return []
    key = f"model:{health.name}"
    ratio = health.error / health.baseline_error if health.baseline_error > 0 else float("inf")
    if ratio < ratio_limit:
        return [(key, None)]
    alert = Alert(
        labels("ModelDegraded", health.name, WARNING),
        {
            "summary": f"model {health.name} v{health.version} (@{health.alias}) is degraded",
            "description": (
                f"recent RMSE {health.error:.4f} is {ratio:.2f}x the {health.baseline_error:.4f}"
                f" it was promoted with (limit {ratio_limit:.2f}x)"
            ),
        },
        now,
        None,
        link(base, "/api/v2/neuroweaver/models"),
        key,
    )
    return [(key, alert)]


def training_alert(fact: TrainingFact, ttl: timedelta, base: str | None = None) -> list[Evaluated]:
    """A failed or unpromoted training, as news for `ttl`; [] when it is neither (or unknown)."""
    key = f"training:{fact.run_id}"
    if fact.failed:
        name, severity = "TrainingFailed", WARNING
        summary = f"training {fact.run_id[:12]} of {fact.model} failed"
    elif fact.promoted is False:
        name, severity = "TrainingNotPromoted", INFO
        summary = f"{fact.model} v{fact.version} was not promoted: the champion stays"
    else:
        return [] if fact.promoted is None else [(key, None)]
    alert = Alert(
        labels(name, fact.model, severity, run_id=fact.run_id),
        {"summary": summary, "description": fact.message or "no message recorded"},
        fact.finished_at,
        fact.finished_at + ttl,
        link(base, "/api/v2/neuroweaver/status"),
        key,
    )
    return [(key, alert)]


def action_alert(action: Action, ttl: timedelta, base: str | None = None) -> list[Evaluated]:
    """Each healing action that did (or previewed) something is news for `ttl`."""
    if action.state not in ALERTED_ACTIONS:
        return []
    key = f"action:{action.id}"
    replica = action.params.get("endpoint")
    severity = WARNING if action.state is ActionState.FAILED else INFO
    alert = Alert(
        labels(
            "HealingAction",
            action.service,
            severity,
            str(replica) if replica else None,
            action=str(action.kind),
            action_id=action.id,
        ),
        {
            "summary": f"{action.kind} {action.target} for {action.service}: {action.state}",
            "description": f"why: {action.reason}; result: {action.result or 'none yet'}",
        },
        action.created_at,
        action.created_at + ttl,
        link(base, f"/api/v2/ai/actions?service={quote(action.service)}"),
        key,
    )
    return [(key, alert)]


def anomaly_alerts(facts: Sequence[AnomalyFact], base: str | None = None) -> list[Evaluated]:
    return [anomaly_alert(f, base) for f in facts]
