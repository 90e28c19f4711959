"""The healing policy: what should be done about one service, given what is known about it.

Pure: inputs in, proposals out. Modes, rate limits and execution belong to the engine
(monitoring/healing/engine.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from monitoring.assess.scaling import Recommendation
from monitoring.healing.actions import ActionKind, Mode


@dataclass(frozen=True)
class CommandSpec:
    """A configured command: nothing outside this list is ever run."""

    argv: tuple[str, ...]
    undo_argv: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HealingPolicy:
    mode: Mode = Mode.DRY_RUN
    rate_limit: timedelta = timedelta(minutes=15)
    drain_error_rate: float = 0.2
    drain_anomaly_score: float = 0.9
    restore_error_rate: float = 0.05
    model_error_ratio: float = 1.25
    command_risk: float = 0.8
    webhook_url: str | None = None
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointHealth:
    name: str
    error_rate: float
    drained: bool = False
    anomaly_score: float = 0.0


@dataclass(frozen=True)
class ModelHealth:
    """The served model's recent error against the error it was promoted with."""

    name: str
    version: str
    error: float
    baseline_error: float
    previous_version: str | None
    alias: str = "champion"


@dataclass(frozen=True)
class HealingInputs:
    service: str
    endpoints: Sequence[EndpointHealth] = ()
    model: ModelHealth | None = None
    risk: float | None = None
    recommendation: Recommendation | None = None
    anomalies: Sequence[str] = ()


@dataclass(frozen=True)
class Proposal:
    kind: ActionKind
    target: str
    reason: str
    params: Mapping[str, object]
    undo: str | None


def endpoint_proposals(inputs: HealingInputs, policy: HealingPolicy) -> list[Proposal]:
    out: list[Proposal] = []
    serving = [e for e in inputs.endpoints if not e.drained]
    for e in inputs.endpoints:
        bad = (
            e.error_rate > policy.drain_error_rate or e.anomaly_score >= policy.drain_anomaly_score
        )
        # Draining the last serving endpoint would turn a degraded service into an outage.
        if not e.drained and bad and len(serving) > 1:
            serving = [s for s in serving if s.name != e.name]
            why = f"error rate {e.error_rate:.1%}, anomaly score {e.anomaly_score:.2f}"
            out.append(
                Proposal(
                    ActionKind.DRAIN_ENDPOINT,
                    e.name,
                    why,
                    {"endpoint": e.name},
                    f"restore endpoint {e.name} in RelayCore",
                )
            )
        elif e.drained and e.error_rate <= policy.restore_error_rate and e.anomaly_score < 0.5:
            why = f"recovered: error rate {e.error_rate:.1%}"
            out.append(
                Proposal(
                    ActionKind.RESTORE_ENDPOINT,
                    e.name,
                    why,
                    {"endpoint": e.name},
                    f"drain endpoint {e.name} again",
                )
            )
    return out


def model_proposal(inputs: HealingInputs, policy: HealingPolicy) -> Proposal | None:
    m = inputs.model
    if m is None or m.previous_version is None or m.baseline_error <= 0:
        return None
    ratio = m.error / m.baseline_error
    if ratio < policy.model_error_ratio:
        return None
    why = (
        f"model error {m.error:.4g} is {ratio:.2f}x its promotion error {m.baseline_error:.4g}"
        f" (limit {policy.model_error_ratio}x)"
    )
    params = {
        "model": m.name,
        "alias": m.alias,
        "from_version": m.version,
        "to_version": m.previous_version,
    }
    undo = f"re-point @{m.alias} of {m.name} to version {m.version}"
    return Proposal(ActionKind.ROLLBACK_CHAMPION, f"{m.name}@{m.alias}", why, params, undo)


def scaling_proposal(inputs: HealingInputs, policy: HealingPolicy) -> Proposal | None:
    rec = inputs.recommendation
    if rec is None or policy.webhook_url is None or rec.direction == "hold":
        return None
    why = f"{rec.rule}: {rec.current_replicas} -> {rec.desired_replicas}; " + "; ".join(rec.reasons)
    params = {
        "url": policy.webhook_url,
        "current": rec.current_replicas,
        "desired": rec.desired_replicas,
        "rule": rec.rule,
    }
    undo = f"send {rec.current_replicas} replicas to the webhook"
    return Proposal(ActionKind.SCALING_WEBHOOK, policy.webhook_url, why, params, undo)


def command_proposal(inputs: HealingInputs, policy: HealingPolicy) -> Proposal | None:
    spec = policy.commands.get(inputs.service)
    if spec is None or inputs.risk is None or inputs.risk < policy.command_risk:
        return None
    why = f"failure risk {inputs.risk:.2f} >= {policy.command_risk}"
    if inputs.anomalies:
        why += "; open anomalies: " + ", ".join(inputs.anomalies)
    params = {"argv": list(spec.argv), "undo_argv": list(spec.undo_argv or ())}
    undo = f"run {' '.join(spec.undo_argv)}" if spec.undo_argv else None
    return Proposal(ActionKind.RUN_COMMAND, " ".join(spec.argv), why, params, undo)


def decide(inputs: HealingInputs, policy: HealingPolicy) -> list[Proposal]:
    """What the policy would do about one service now, before modes and rate limits."""
    single = (
        model_proposal(inputs, policy),
        scaling_proposal(inputs, policy),
        command_proposal(inputs, policy),
    )
    return endpoint_proposals(inputs, policy) + [p for p in single if p is not None]
