"""Scaling recommendations: Kubernetes' HPA rule, and a predictive mode built on forecasts.

The reactive rule follows the HPA controller's algorithm (desired = ceil(current * metric /
target), tolerance, scale-down stabilisation, scale-up and scale-down rate policies) so that
its advice matches what a cluster would do. The predictive mode scales out ahead of a forecast
rise, and in ahead of a drop once the upper bound stays low for the whole scale-in window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.assess.forecasting import Forecast

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class MetricSample:
    """One metric's current value (averaged per pod, as the HPA sees it) and its target."""

    name: str
    value: float
    target: float


@dataclass(frozen=True)
class ScalingPolicy:
    """The HPA `behavior` block; defaults are Kubernetes' own."""

    min_replicas: int = 1
    max_replicas: int = 100
    tolerance: float = 0.1
    scale_down_window: timedelta = timedelta(minutes=5)
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    scale_up_period: timedelta = timedelta(seconds=15)
    scale_down_percent: float = 100.0
    scale_down_period: timedelta = timedelta(seconds=15)


@dataclass(frozen=True)
class Recommendation:
    """A replica count with the rule that produced it and the numbers it came from."""

    rule: str
    current_replicas: int
    desired_replicas: int
    metrics: tuple[MetricSample, ...]
    at: datetime
    reasons: tuple[str, ...]
    raw_desired: int
    forecast_value: float | None = None
    forecast_at: datetime | None = None

    @property
    def direction(self) -> str:
        if self.desired_replicas == self.current_replicas:
            return "hold"
        return "out" if self.desired_replicas > self.current_replicas else "in"


def metric_proposal(current: int, metric: MetricSample, tolerance: float) -> tuple[int, str]:
    """One metric's replica proposal by the HPA formula, and why."""
    ratio = metric.value / metric.target
    if abs(ratio - 1.0) <= tolerance:
        return current, (
            f"{metric.name} {metric.value:g} vs target {metric.target:g}: ratio {ratio:.3f} "
            f"within tolerance {tolerance:g}, keep {current}"
        )
    # The small epsilon keeps float noise (90/75*50 = 60.000000000000007) from adding a pod.
    desired = math.ceil(current * ratio - 1e-9)
    return desired, (
        f"{metric.name} {metric.value:g} vs target {metric.target:g}: "
        f"ceil({current} * {ratio:.3f}) = {desired}"
    )


def raw_desired(
    current: int, metrics: Sequence[MetricSample], tolerance: float
) -> tuple[int, list[str]]:
    """The HPA's multi-metric proposal: the largest of the per-metric proposals."""
    if not metrics:
        raise ValueError("at least one metric is needed to recommend a replica count")
    proposals = [metric_proposal(current, m, tolerance) for m in metrics]
    return max(p for p, _ in proposals), [reason for _, reason in proposals]


@dataclass
class HorizontalAutoscaler:
    """Kubernetes' reactive HPA rule with its stabilisation window and rate policies.

    It assumes its recommendations are applied (as the HPA controller applies them), so the
    rate limits count the changes it has recommended in each period.
    """

    policy: ScalingPolicy = field(default_factory=ScalingPolicy)
    clock: Clock = datetime.now
    history: list[tuple[datetime, int]] = field(default_factory=list)
    events: list[tuple[datetime, int]] = field(default_factory=list)

    def recommend(self, current: int, metrics: Sequence[MetricSample]) -> Recommendation:
        now = self.clock()
        proposal, reasons = self.reactive(now, current, metrics)
        return self.finish("hpa", now, current, metrics, proposal, reasons)

    def reactive(
        self, now: datetime, current: int, metrics: Sequence[MetricSample]
    ) -> tuple[int, list[str]]:
        """The raw proposal, then stabilised: scale down only to the window's highest one."""
        raw, reasons = raw_desired(current, metrics, self.policy.tolerance)
        self.history = [(t, r) for t, r in self.history if now - t < self.policy.scale_down_window]
        self.history.append((now, raw))
        stable = max(r for _, r in self.history) if raw < current else raw
        stable = min(stable, max(current, raw))
        if stable != raw:
            window = self.policy.scale_down_window
            reasons.append(f"stabilised: highest recommendation over last {window} is {stable}")
        return stable, reasons

    def finish(
        self,
        rule: str,
        now: datetime,
        current: int,
        metrics: Sequence[MetricSample],
        proposal: int,
        reasons: list[str],
    ) -> Recommendation:
        """Apply the rate policies and replica bounds, and record the change as applied."""
        desired = self.limited(now, current, proposal, reasons)
        if desired != current:
            self.events.append((now, desired - current))
        return Recommendation(
            rule,
            current,
            desired,
            tuple(metrics),
            now,
            tuple(reasons),
            proposal,
        )

    def added_since(self, now: datetime, period: timedelta, sign: int) -> int:
        return sum(d for t, d in self.events if now - t < period and d * sign > 0)

    def limited(self, now: datetime, current: int, proposal: int, reasons: list[str]) -> int:
        p = self.policy
        if proposal > current:
            start = current - self.added_since(now, p.scale_up_period, +1)
            # Kubernetes picks the most permissive policy (selectPolicy: Max).
            cap = max(start + p.scale_up_pods, math.ceil(start * (1 + p.scale_up_percent / 100)))
            desired = min(proposal, cap)
        else:
            start = current - self.added_since(now, p.scale_down_period, -1)
            floor = math.ceil(start * (1 - p.scale_down_percent / 100))
            desired = max(proposal, floor)
        if desired != proposal:
            reasons.append(f"rate-limited from {proposal} to {desired}")
        bounded = min(max(desired, p.min_replicas), p.max_replicas)
        if bounded != desired:
            reasons.append(f"bounded to [{p.min_replicas}, {p.max_replicas}]: {bounded}")
        return bounded


@dataclass
class PredictiveAutoscaler:
    """Scales out ahead of a forecast rise and in ahead of a forecast drop.

    `forecast` is of the total demand in the metric's units (e.g. requests/s or CPU cores
    summed over pods), so the need it implies does not depend on the current replica count.

    - Out: the replicas needed once a replica started now is ready (the start-up time, then
      `lookahead`), from the forecast at `level` (None: the point forecast).
    - In: only when the forecast's upper bound at `scale_in_level` stays within what the
      smaller count carries at the target over the whole scale-in window, from now until a
      replica removed now could be started again (start-up time plus `lookahead`). A rise
      within that window holds the replicas.
    - Reactive: when the HPA rule asks for more than the forecast, the HPA rule wins.

    Because it sizes ahead rather than after the fact, it may run each replica closer to full
    than the reactive rule's target: `target_scale` (1.125 turns a 0.8 target into 0.9).
    """

    hpa: HorizontalAutoscaler
    startup: timedelta
    # The bound scaling out sizes to; None: the point forecast. The replay and insights use 80.
    level: int | None = None
    # Demand beyond start-up that replicas started now must also cover (one decision period).
    lookahead: timedelta = timedelta(0)
    # The bound that must stay below the smaller count's capacity before scaling in.
    scale_in_level: int = 80
    target_scale: float = 1.0

    def recommend(
        self,
        current: int,
        metrics: Sequence[MetricSample],
        forecast: Forecast,
        target: float,
        observed: float | None = None,
    ) -> Recommendation:
        """`target` is the demand one replica should carry; `observed` the demand now.

        With `observed`, the forecast's path is anchored to it (`peak`): the forecast's change
        from now is added to what is measured now, so a forecast whose level has drifted since
        it was fitted does not over- or under-provision.
        """
        now = self.hpa.clock()
        # The reactive safety net runs at the same (closer) target as the forecast's sizing.
        closer = [replace(m, target=m.target * self.target_scale) for m in metrics]
        reactive, reasons = self.hpa.reactive(now, current, closer)
        if observed is not None:
            base = forecast.value_at(pd.Timestamp(now))
            reasons.append(f"anchored to observed {observed:g} (forecast now {base:g})")
        carry = target * self.target_scale
        when, need, needed = self.out_need(now, forecast, observed, carry, reasons)
        if reactive > current or needed > current:
            proposal = max(reactive, needed)
            if needed > reactive:
                reasons.append(f"scale out ahead of the forecast: {needed} > reactive {reactive}")
        else:
            when, need, keep = self.in_need(now, forecast, observed, carry)
            proposal = min(current, keep)
            reasons.append(self.in_reason(now, current, reactive, keep, when, need, carry))
        rule = "predictive" if proposal != reactive else "hpa"
        rec = self.hpa.finish(rule, now, current, metrics, proposal, reasons)
        return replace(rec, forecast_value=need, forecast_at=when)

    def out_need(
        self,
        now: datetime,
        forecast: Forecast,
        observed: float | None,
        carry: float,
        reasons: list[str],
    ) -> tuple[datetime, float, int]:
        """The demand, and replicas, once a replica started now is ready (start-up, then one
        decision period); demand before then is out of reach of new replicas."""
        ready = now + self.startup
        anchor = self.anchor(forecast, now, observed, self.level)
        when, need = peak(forecast, ready, ready + self.lookahead, self.level, anchor)
        needed = replicas_for(need, carry)
        bound = "mean" if self.level is None else f"upper {self.level}%"
        reasons.append(
            f"forecast {bound} at {when:%Y-%m-%d %H:%M} (when a replica started now is ready): "
            f"{need:g} / {carry:g} per replica = {needed}"
        )
        return when, need, needed

    def in_need(
        self, now: datetime, forecast: Forecast, observed: float | None, carry: float
    ) -> tuple[datetime, float, int]:
        """The upper bound's peak over the scale-in window, and the replicas it needs."""
        until = now + self.startup + self.lookahead
        anchor = self.anchor(forecast, now, observed, self.scale_in_level)
        when, top = peak(forecast, now, until, self.scale_in_level, anchor)
        return when, top, replicas_for(top, carry)

    def in_reason(
        self,
        now: datetime,
        current: int,
        reactive: int,
        keep: int,
        when: datetime,
        top: float,
        carry: float,
    ) -> str:
        until = now + self.startup + self.lookahead
        window = (
            f"until {until:%Y-%m-%d %H:%M} (start-up {_minutes(self.startup)} + decision period "
            f"{_minutes(self.lookahead)})"
        )
        bound = f"upper {self.scale_in_level}%"
        if keep < current:
            return (
                f"scale in ahead of the forecast: {bound} peaks at {top:g} {window}, "
                f"within what {keep} carry ({keep * carry:g})"
            )
        if reactive < current:
            return (
                f"scale-in held at {current}: {bound} reaches {top:g} at "
                f"{when:%Y-%m-%d %H:%M}, {window}, more than {current - 1} carry"
            )
        return f"hold: {bound} peaks at {top:g} {window}, needing {keep}"

    @staticmethod
    def anchor(
        forecast: Forecast, now: datetime, observed: float | None, level: int | None
    ) -> tuple[float, float] | None:
        """What `peak` needs to anchor a path to the demand observed now (None: no anchor)."""
        if observed is None:
            return None
        at = pd.Timestamp(now)
        base = forecast.value_at(at)
        half = 0.0 if level is None else forecast.value_at(at, "upper", level) - base
        return observed - base, half


def peak(
    forecast: Forecast,
    start: datetime,
    end: datetime,
    level: int | None,
    anchor: tuple[float, float] | None = None,
) -> tuple[datetime, float]:
    """The forecast's highest value from `start` to `end`, and when.

    The steps from the first one at or after `start` to the last one not after `end` count; a
    window that falls between two steps, or past the horizon, takes the next (or last) step.

    `anchor` is (observed minus the point forecast now, the interval's half-width now). Once
    demand now is known, the level's error is gone; what stays uncertain is the interval's
    growth from now on: observed + (mean(t) - mean(now)) + sqrt(half(t)^2 - half(now)^2).
    """
    stamps = forecast.index.asi8
    lo = int(np.searchsorted(stamps, pd.Timestamp(start).value, side="left"))
    hi = int(np.searchsorted(stamps, pd.Timestamp(end).value, side="right"))
    lo = min(lo, len(stamps) - 1)
    hi = max(hi, lo + 1)
    mean = forecast.mean[lo:hi]
    if level is None:
        values = mean if anchor is None else mean + anchor[0]
    elif anchor is None:
        values = forecast.upper[level][lo:hi]
    else:
        half = forecast.upper[level][lo:hi] - mean
        values = mean + anchor[0] + np.sqrt(np.maximum(half**2 - anchor[1] ** 2, 0.0))
    best = int(np.argmax(values))
    return forecast.index[lo + best].to_pydatetime(), max(float(values[best]), 0.0)


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} min"


def replicas_for(demand: float, carry: float) -> int:
    """The fewest replicas that carry `demand` at `carry` each (the epsilon absorbs float noise)."""
    return max(math.ceil(demand / carry - 1e-9), 0)
