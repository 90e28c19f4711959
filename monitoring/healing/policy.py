"""The healing policy: what should be done about one service, given what is known about it.

A replica is drained only on evidence that is its own (its own anomaly, RelayCore's errors or
latency for it) and only when most of its service's replicas are not bad alike: trouble shared
by most replicas is the service's, and goes to scaling instead. A drained replica is restored on
a probe's evidence, since without traffic its own metrics say nothing.

Pure: inputs in, proposals out. Modes, rate limits and execution belong to the engine
(monitoring/healing/engine.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from monitoring.assess.scaling import Recommendation
from monitoring.healing.actions import ActionKind, Mode
from monitoring.healing.probe import ProbeReport


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
    # An open anomaly is drain evidence while it is current: the replica is still off its level
    # on one of its metrics, or its last anomalous row is at most this old. A one-row blip stays
    # open through its quiet spell (for alerts) but stops counting once it has passed.
    drain_anomaly_fresh: timedelta = timedelta(minutes=5)
    # The metrics by which a replica serves badly. Its load (request_count) and what follows
    # load (cpu_usage, memory_usage) move when the router shifts traffic to it from a slow
    # peer: an anomaly on those alone alerts, but drains nothing.
    drain_metrics: tuple[str, ...] = ("network_latency", "error_rate")
    # A replica whose RelayCore latency is this many times its peers' median is slow on its own,
    # if it answered at least this many calls well lately (about the last minute); the router
    # starves a replica it finds slow, and a thin average is noisy.
    drain_latency_ratio: float = 3.0
    drain_latency_min_calls: float = 20.0
    # A thin average 3-5x its peers' was noise (no fault); a replica slowed x20 is starved as
    # fast, and its few calls still say x10 or more.
    drain_latency_thin_ratio: float = 10.0
    # More than this share of a service's serving replicas bad alike: service-wide, never drained.
    service_wide_share: float = 0.5
    # A replica's anomaly is its peers' too when they moved at least this share of its own shift
    # (same direction) on each metric that moved by more than MIN_SHIFT.
    alike_share: float = 0.5
    # A drained replica comes back when every probe answers below 500 and their median latency
    # is within this many times its service's normal (and never held to less than the floor).
    restore_latency_ratio: float = 3.0
    restore_latency_floor_ms: float = 10.0
    model_error_ratio: float = 1.25
    # A service's command runs at this failure risk under the hand-set rule; a learned
    # failure-risk version runs it at its own alarm threshold, chosen on validation.
    command_risk: float = 0.8
    webhook_url: str | None = None
    max_replicas: int = 100
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointHealth:
    """One replica (a RelayCore endpoint) and the evidence that is its own: RelayCore's error
    rate, latency and circuit breaker for it, its own open anomaly, and for a drained one, a
    probe."""

    name: str
    error_rate: float
    drained: bool = False
    anomaly_score: float = 0.0
    latency_ms: float | None = None
    url: str | None = None
    anomaly_metrics: tuple[str, ...] = ()
    probe: ProbeReport | None = None
    # Since its anomaly began: how far it moved per metric (log ratio), and its peers' median.
    shift: Mapping[str, float] = field(default_factory=dict)
    peer_shift: Mapping[str, float] = field(default_factory=dict)
    breaker: str = "closed"  # RelayCore's breaker for it: closed, open or half_open
    # How long ago its open anomaly's last anomalous row was (zero: now, or no anomaly).
    anomaly_quiet: timedelta = timedelta(0)
    # RelayCore's count of calls it answered well lately; None: not known (counts as enough).
    recent_ok: float | None = None


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
    risk_threshold: float | None = None  # the learned version's alarm threshold, if one answered
    recommendation: Recommendation | None = None
    anomalies: Sequence[str] = ()
    # The service's normal latency (ms), which a drained replica's probe is held to.
    normal_latency_ms: float | None = None


@dataclass(frozen=True)
class Proposal:
    kind: ActionKind
    target: str
    reason: str
    params: Mapping[str, object]
    undo: str | None


TRIPPED = frozenset({"open", "half_open"})  # a half-open breaker is still probing a trip


def own_evidence(
    endpoint: EndpointHealth, peers: Sequence[EndpointHealth], policy: HealingPolicy
) -> list[str]:
    """What says this replica, and not its service, is bad: its own anomaly, or RelayCore's
    errors, breaker or latency for it (latency only against its peers', so a slow service is
    not)."""
    found = []
    symptoms = drain_symptoms(endpoint, policy)
    if current_anomaly(endpoint, policy) and symptoms:
        unlike = unlike_peers(endpoint, policy)
        unlike = None if unlike is None else [m for m in unlike if m in symptoms]
        metrics = ", ".join(endpoint.anomaly_metrics)
        if unlike is None:
            found.append(f"its own anomaly (score {endpoint.anomaly_score:.2f} on {metrics})")
        elif unlike:
            moves = _moves(endpoint, unlike)
            found.append(f"its own anomaly (score {endpoint.anomaly_score:.2f}: {moves})")
    if endpoint.error_rate > policy.drain_error_rate:
        found.append(
            f"RelayCore error rate {endpoint.error_rate:.1%} > {policy.drain_error_rate:.0%}"
        )
    if endpoint.breaker in TRIPPED:
        # The breaker trips in seconds on this replica's own failures, while the error rate
        # over its last calls climbs slowly once the router sends it little.
        found.append(f"RelayCore's circuit breaker for it is {endpoint.breaker}")
    normal = median_latency([p for p in peers if well_sampled(p, policy)])
    limit = latency_limit(endpoint, policy)
    if endpoint.latency_ms is not None and normal and limit is not None:
        ratio = endpoint.latency_ms / normal
        if ratio >= limit:
            thin = "" if well_sampled(endpoint, policy) else f", on {endpoint.recent_ok:.0f} calls"
            found.append(
                f"RelayCore latency {endpoint.latency_ms:.0f} ms, {ratio:.1f}x its peers' "
                f"{normal:.0f} ms{thin}"
            )
    return found


def latency_limit(endpoint: EndpointHealth, policy: HealingPolicy) -> float | None:
    """How many times its peers' latency drains it: `drain_latency_ratio` on enough recent
    calls; on a few (the router starves a replica it finds slow), only the far larger
    `drain_latency_thin_ratio`; on none lately (an old figure), never."""
    if well_sampled(endpoint, policy):
        return policy.drain_latency_ratio
    if endpoint.recent_ok is not None and endpoint.recent_ok >= 1.0:
        return policy.drain_latency_thin_ratio
    return None


def well_sampled(endpoint: EndpointHealth, policy: HealingPolicy) -> bool:
    """RelayCore's latency for it rests on enough recent calls to be compared."""
    return endpoint.recent_ok is None or endpoint.recent_ok >= policy.drain_latency_min_calls


def drain_symptoms(endpoint: EndpointHealth, policy: HealingPolicy) -> list[str]:
    """The anomaly's metrics by which the replica serves badly (`drain_metrics`)."""
    return [m for m in endpoint.anomaly_metrics if m in policy.drain_metrics]


def load_only_anomaly(endpoint: EndpointHealth, policy: HealingPolicy) -> bool:
    """A current anomaly on none of the `drain_metrics`: the replica's load moved."""
    return current_anomaly(endpoint, policy) and not drain_symptoms(endpoint, policy)


def current_anomaly(endpoint: EndpointHealth, policy: HealingPolicy) -> bool:
    """The replica's own open anomaly is strong enough and has not passed: it is still off its
    level on one of the anomaly's metrics, or it was anomalous within `drain_anomaly_fresh`."""
    if endpoint.anomaly_score < policy.drain_anomaly_score:
        return False
    return endpoint.anomaly_quiet <= policy.drain_anomaly_fresh or bool(moved(endpoint))


MIN_SHIFT = math.log(1.2)  # a level that moved less than 20% cannot be told alike or not


def moved(endpoint: EndpointHealth) -> list[str]:
    """The anomaly's metrics on which the replica's level moved enough to compare."""
    return [
        m
        for m in endpoint.anomaly_metrics
        if m in endpoint.shift and m in endpoint.peer_shift and abs(endpoint.shift[m]) >= MIN_SHIFT
    ]


def unlike_peers(endpoint: EndpointHealth, policy: HealingPolicy) -> list[str] | None:
    """The anomaly's metrics on which the replica moved and its peers did not move alike; None
    when no metric moved enough to tell (the anomaly then counts as its own)."""
    found = moved(endpoint)
    if not found:
        return None
    return [
        m
        for m in found
        if endpoint.peer_shift[m] * math.copysign(1.0, endpoint.shift[m])
        < policy.alike_share * abs(endpoint.shift[m])
    ]


def _moves(endpoint: EndpointHealth, metrics: Sequence[str]) -> str:
    return ", ".join(
        f"{m} x{math.exp(endpoint.shift[m]):.1f} vs its peers' x{math.exp(endpoint.peer_shift[m]):.1f}"
        for m in metrics
    )


def median_latency(endpoints: Sequence[EndpointHealth]) -> float | None:
    values = sorted(e.latency_ms for e in endpoints if e.latency_ms is not None)
    return statistics.median(values) if values else None


def service_wide(inputs: HealingInputs, policy: HealingPolicy) -> str | None:
    """Why the trouble is the service's rather than a replica's, or None: most serving replicas
    are bad at once, or one's anomaly is a move its peers made too (a surge their detectors
    have not flagged yet). Two or more replicas are needed to tell them apart."""
    serving = [e for e in inputs.endpoints if not e.drained]
    if len(serving) < 2:
        return None
    shared = [
        e
        for e in serving
        if e.anomaly_score >= policy.drain_anomaly_score and unlike_peers(e, policy) == []
    ]
    bad = {e.name for e in serving if _evidence(e, serving, policy)} | {e.name for e in shared}
    # Anomalies of load alone drain nothing, but on most replicas at once they are a surge.
    loaded = {e.name for e in serving if load_only_anomaly(e, policy)}
    for alike in (bad, loaded):
        if len(alike) > policy.service_wide_share * len(serving):
            names = ", ".join(sorted(alike))
            return f"service-wide: {len(alike)} of {len(serving)} replicas alike ({names})"
    if shared:
        e = shared[0]
        return f"service-wide: {e.name}'s anomaly is its peers' too ({_moves(e, moved(e))})"
    return None


def _evidence(e: EndpointHealth, serving: Sequence[EndpointHealth], p: HealingPolicy) -> list[str]:
    return own_evidence(e, [s for s in serving if s.name != e.name], p)


def drain_proposals(inputs: HealingInputs, policy: HealingPolicy) -> list[Proposal]:
    """Drains the replicas bad on their own evidence, unless the trouble is service-wide, and
    never the last serving one (that would turn a degraded service into an outage)."""
    serving = [e for e in inputs.endpoints if not e.drained]
    if service_wide(inputs, policy) is not None:
        return []
    judged = [(e, _evidence(e, serving, policy)) for e in serving]
    out: list[Proposal] = []
    left = len(serving)
    for e, evidence in judged:
        if not evidence or left <= 1:
            continue
        left -= 1
        why = f"{e.name} on its own evidence: " + "; ".join(evidence)
        params = {"endpoint": e.name, "replica": e.name, "evidence": evidence}
        undo = f"restore endpoint {e.name} in RelayCore"
        out.append(Proposal(ActionKind.DRAIN_ENDPOINT, e.name, why, params, undo))
    return out


def probe_verdict(
    report: ProbeReport | None, normal_ms: float | None, policy: HealingPolicy
) -> tuple[bool, str]:
    """Whether a drained replica's probe says it is healthy again, and the evidence."""
    if report is None or not report.statuses:
        why = report.problem if report is not None and report.problem else "not probed"
        return False, f"no probe evidence: {why}"
    answers = ", ".join("none" if s is None else str(s) for s in report.statuses)
    said = f"probed {report.url} {len(report.statuses)}x: status {answers}"
    if any(s is None or s >= 500 for s in report.statuses):
        return False, said
    median = report.median_ms or 0.0
    if normal_ms is None:
        return True, f"{said}, median {median:.0f} ms (no normal latency known: status only)"
    limit = max(policy.restore_latency_ratio * normal_ms, policy.restore_latency_floor_ms)
    verdict = median <= limit
    word = "within" if verdict else "above"
    return verdict, (
        f"{said}, median {median:.0f} ms {word} {limit:.0f} ms "
        f"({policy.restore_latency_ratio:g}x its service's normal {normal_ms:.0f} ms)"
    )


def restore_proposals(inputs: HealingInputs, policy: HealingPolicy) -> list[Proposal]:
    """Restores a drained replica once probes of it are healthy; its own metrics, without
    traffic, say nothing."""
    out: list[Proposal] = []
    for e in inputs.endpoints:
        if not e.drained:
            continue
        healthy, evidence = probe_verdict(e.probe, inputs.normal_latency_ms, policy)
        if not healthy:
            continue
        params: dict[str, object] = {"endpoint": e.name, "replica": e.name}
        if e.probe is not None:
            params["probe"] = e.probe.describe()
        if e.url:
            params["url"] = e.url
        why = f"{e.name} recovered: {evidence}"
        out.append(
            Proposal(
                ActionKind.RESTORE_ENDPOINT, e.name, why, params, f"drain endpoint {e.name} again"
            )
        )
    return out


def endpoint_proposals(inputs: HealingInputs, policy: HealingPolicy) -> list[Proposal]:
    return drain_proposals(inputs, policy) + restore_proposals(inputs, policy)


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


def scaling_proposal(
    inputs: HealingInputs, policy: HealingPolicy, wide: str | None = None
) -> Proposal | None:
    """The recommendation, sent to the webhook; a service-wide anomaly (`wide`) asks for at
    least one replica more, since draining cannot help."""
    rec = inputs.recommendation
    if policy.webhook_url is None:
        return None
    serving = len([e for e in inputs.endpoints if not e.drained])
    current = rec.current_replicas if rec is not None else serving
    desired = rec.desired_replicas if rec is not None else current
    reasons = [] if rec is None else [f"{rec.rule}: {current} -> {desired}", *rec.reasons]
    rule = "hold" if rec is None else rec.rule
    if wide is not None and desired <= current and current < policy.max_replicas:
        desired, rule = current + 1, "service-wide"
        reasons.insert(0, f"{wide}: scale out to {desired} instead of draining")
    elif wide is not None:
        reasons.insert(0, f"{wide}: no drain")
    if desired == current:
        return None
    params = {"url": policy.webhook_url, "current": current, "desired": desired, "rule": rule}
    why = "; ".join(reasons) or f"{current} -> {desired}"
    undo = f"send {current} replicas to the webhook"
    return Proposal(ActionKind.SCALING_WEBHOOK, policy.webhook_url, why, params, undo)


def command_proposal(inputs: HealingInputs, policy: HealingPolicy) -> Proposal | None:
    spec = policy.commands.get(inputs.service)
    threshold = policy.command_risk if inputs.risk_threshold is None else inputs.risk_threshold
    if spec is None or inputs.risk is None or inputs.risk < threshold:
        return None
    why = f"failure risk {inputs.risk:.2f} >= {threshold:.2f}"
    if inputs.anomalies:
        why += "; open anomalies: " + ", ".join(inputs.anomalies)
    params = {"argv": list(spec.argv), "undo_argv": list(spec.undo_argv or ())}
    undo = f"run {' '.join(spec.undo_argv)}" if spec.undo_argv else None
    return Proposal(ActionKind.RUN_COMMAND, " ".join(spec.argv), why, params, undo)


def decide(inputs: HealingInputs, policy: HealingPolicy) -> list[Proposal]:
    """What the policy would do about one service now, before modes and rate limits."""
    single = (
        model_proposal(inputs, policy),
        scaling_proposal(inputs, policy, service_wide(inputs, policy)),
        command_proposal(inputs, policy),
    )
    return endpoint_proposals(inputs, policy) + [p for p in single if p is not None]
