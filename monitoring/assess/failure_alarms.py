"""How a failure-risk series is judged: its alarms against the events, and its calibration.

An alarm is a rise of the risk to the threshold (one per excursion). It is true when an event
(an incident or a breach) is under way or starts within the horizon after it; an event is
detected when an alarm came within the horizon before its start or during it, and its lead is
how long before the start the first such alarm came (0 if after). The Brier score is the mean
squared gap between the risk and the label on every scored row. The threshold is chosen on the
validation part by the best F1 of precision and recall; the decision compares the test part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from monitoring.assess.failure_model import Interval

THRESHOLDS = tuple(np.round(np.arange(0.02, 0.99, 0.02), 2))


@dataclass(frozen=True)
class AlarmScore:
    threshold: float
    alarms: int
    true_alarms: int
    events: int
    detected: int
    precision: float
    recall: float
    f1: float
    mean_lead_minutes: float | None
    false_alarms_per_day: float
    brier: float
    rows: int

    def metrics(self, prefix: str) -> dict[str, float]:
        """The figures as MLflow metrics (a missing lead is left out)."""
        return {
            f"{prefix}{k}": float(v)
            for k, v in asdict(self).items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }


def _alarms(times: pd.DatetimeIndex, risk: np.ndarray, threshold: float) -> pd.DatetimeIndex:
    above = risk >= threshold
    rising = above & ~np.concatenate(([False], above[:-1]))
    return times[rising]


def score(
    rows: pd.DataFrame,
    risk: np.ndarray,
    found: Mapping[str, Sequence[Interval]],
    threshold: float,
    horizon: int,
) -> AlarmScore:
    """Alarm figures and the Brier score of `risk` (one per row of `rows`) over those rows."""
    rows = rows.reset_index(drop=True)  # `risk` is positional
    ahead = pd.Timedelta(minutes=horizon)
    alarms = true = n_events = detected = 0
    leads: list[float] = []
    days = 0.0
    risk = np.asarray(risk, float)
    for service, part in rows.groupby("service", sort=True):
        times = pd.DatetimeIndex(part["timestamp"])
        fired = _alarms(times, risk[part.index.to_numpy()], threshold)
        since, until = part["timestamp"].min(), part["timestamp"].max()
        days += max((until - since) / pd.Timedelta(days=1), 1 / 288)
        service_events = list(found.get(str(service), ()))
        matched = np.zeros(len(fired), dtype=bool)
        for start, end in service_events:
            hit = (fired >= start - ahead) & (fired <= end)
            matched |= hit
            if since <= start <= until:
                n_events += 1
                if hit.any():
                    detected += 1
                    leads.append(max((start - fired[hit][0]) / pd.Timedelta(minutes=1), 0.0))
        alarms, true = alarms + len(fired), true + int(matched.sum())
    precision = true / alarms if alarms else 0.0
    recall = detected / n_events if n_events else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    labels = rows["label"].to_numpy(float)
    return AlarmScore(
        threshold=float(threshold),
        alarms=alarms,
        true_alarms=true,
        events=n_events,
        detected=detected,
        precision=precision,
        recall=recall,
        f1=f1,
        mean_lead_minutes=float(np.mean(leads)) if leads else None,
        false_alarms_per_day=(alarms - true) / days if days else 0.0,
        brier=float(np.mean((risk[rows.index.to_numpy()] - labels) ** 2)) if len(rows) else 0.0,
        rows=len(rows),
    )


def choose_threshold(
    rows: pd.DataFrame,
    risk: np.ndarray,
    found: Mapping[str, Sequence[Interval]],
    horizon: int,
    candidates: Sequence[float] = THRESHOLDS,
) -> float:
    """The threshold with the best F1 on these rows; of equals, the higher (fewer alarms)."""
    best, best_f1 = float(candidates[-1]), -1.0
    for threshold in candidates:
        f1 = score(rows, risk, found, threshold, horizon).f1
        if f1 >= best_f1:
            best, best_f1 = float(threshold), f1
    return best


@dataclass(frozen=True)
class RiskPromotion:
    """Whether the learned version replaces the champion, with the test figures behind it."""

    promoted: bool
    reason: str
    candidate: AlarmScore
    rule: AlarmScore
    champion: AlarmScore | None
    champion_version: str | None

    def tags(self) -> dict[str, str]:
        tags = {
            "promotion.promoted": str(self.promoted),
            "promotion.reason": self.reason,
            "promotion.candidate_brier": f"{self.candidate.brier:.5f}",
            "promotion.candidate_f1": f"{self.candidate.f1:.4f}",
            "promotion.rule_brier": f"{self.rule.brier:.5f}",
            "promotion.rule_f1": f"{self.rule.f1:.4f}",
            "promotion.threshold": f"{self.candidate.threshold:.2f}",
            "promotion.champion_version": self.champion_version or "",
        }
        if self.champion is not None:
            tags["promotion.champion_brier"] = f"{self.champion.brier:.5f}"
            tags["promotion.champion_f1"] = f"{self.champion.f1:.4f}"
        return tags


def beats(new: AlarmScore, old: AlarmScore) -> bool:
    """Better calibrated (a lower Brier score) and alarms at least as good (F1 no lower)."""
    return new.brier < old.brier and new.f1 >= old.f1


def decide(
    candidate: AlarmScore,
    rule: AlarmScore,
    champion: AlarmScore | None,
    champion_version: str | None,
) -> RiskPromotion:
    """Promote only a version that beats the hand-set rule and the champion on the test days."""

    def verdict(promoted: bool, reason: str) -> RiskPromotion:
        return RiskPromotion(promoted, reason, candidate, rule, champion, champion_version)

    figures = f"Brier {candidate.brier:.4f}, F1 {candidate.f1:.3f}"
    if not beats(candidate, rule):
        return verdict(
            False,
            f"{figures} does not beat the hand-set rule's Brier {rule.brier:.4f},"
            f" F1 {rule.f1:.3f} on the same test days",
        )
    if champion is None or champion_version is None:
        return verdict(
            True,
            f"{figures} beats the hand-set rule's {rule.brier:.4f}, {rule.f1:.3f}; no champion yet",
        )
    if not beats(candidate, champion):
        return verdict(
            False,
            f"{figures} does not beat champion v{champion_version}'s Brier"
            f" {champion.brier:.4f}, F1 {champion.f1:.3f} on the same test days",
        )
    return verdict(
        True,
        f"{figures} beats the hand-set rule ({rule.brier:.4f}, {rule.f1:.3f}) and champion"
        f" v{champion_version} ({champion.brier:.4f}, {champion.f1:.3f}) on the same test days",
    )
