"""The shadow verdict: is the challenger better than the champion on the same live requests?

Both versions scored the same predict requests; once the true score of each request is known
(the label horizon later), each has an absolute error per request. The verdict is a paired,
one-sided Wilcoxon signed-rank test on those errors (scipy's): the challenger is promoted when
it is better at level `alpha`, rejected when it is worse at that level or still not better
after `max_labelled` requests, and kept running otherwise. Nothing is judged before
`min_labelled` requests. Pure: arrays in, a verdict out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy.stats import wilcoxon

Decision = Literal["waiting", "running", "promote", "reject"]


@dataclass(frozen=True)
class ShadowVerdict:
    decision: Decision
    labelled: int
    champion_mae: float | None
    challenger_mae: float | None
    p_better: float | None  # one-sided p-value of "the challenger's errors are smaller"
    p_worse: float | None  # one-sided p-value of "they are larger"
    reason: str

    def evidence(self) -> dict[str, str]:
        """As `shadow.<field>` version tags (strings, as MLflow stores them)."""
        return {key: "" if value is None else str(value) for key, value in asdict(self).items()}


def judge(
    champion_error: np.ndarray,
    challenger_error: np.ndarray,
    min_labelled: int,
    max_labelled: int,
    alpha: float,
) -> ShadowVerdict:
    """The verdict on paired absolute errors (one entry per labelled request, same order)."""
    n = len(champion_error)
    if n != len(challenger_error):
        raise ValueError(f"{n} champion errors but {len(challenger_error)} challenger errors")
    if n < min_labelled:
        return ShadowVerdict(
            "waiting", n, _mae(champion_error), _mae(challenger_error), None, None,
            f"{n} labelled requests, fewer than {min_labelled}",
        )  # fmt: skip
    champion_mae, challenger_mae = _mae(champion_error), _mae(challenger_error)
    p_better, p_worse = _p_values(champion_error, challenger_error)
    figures = f"MAE {challenger_mae:.5f} vs the champion's {champion_mae:.5f} on {n} requests"
    if p_better < alpha:
        reason = f"better: {figures}, paired Wilcoxon p={p_better:.3g} < {alpha}"
        decision: Decision = "promote"
    elif p_worse < alpha:
        reason = f"worse: {figures}, paired Wilcoxon p={p_worse:.3g} < {alpha}"
        decision = "reject"
    elif n >= max_labelled:
        reason = f"not better after {max_labelled} requests: {figures}, p={p_better:.3g}"
        decision = "reject"
    else:
        reason = f"not yet better: {figures}, p={p_better:.3g} >= {alpha}"
        decision = "running"
    return ShadowVerdict(decision, n, champion_mae, challenger_mae, p_better, p_worse, reason)


def _p_values(champion_error: np.ndarray, challenger_error: np.ndarray) -> tuple[float, float]:
    """(p better, p worse); identical errors on every request are no evidence either way."""
    difference = champion_error - challenger_error
    if not np.any(difference):
        return 1.0, 1.0
    better = wilcoxon(champion_error, challenger_error, alternative="greater").pvalue
    worse = wilcoxon(champion_error, challenger_error, alternative="less").pvalue
    return round(float(better), 6), round(float(worse), 6)


def _mae(error: np.ndarray) -> float | None:
    return round(float(np.mean(error)), 6) if len(error) else None
