"""The shadow review: @challenger against @champion on the same live requests, in this process.

The API files a sampled share (SHADOW_SHARE) of keyed predict requests with the champion's
answers (serving/neuroweaver/shadow.py). Each orchestration cycle, this review scores the rows
the current champion answered since the challenger entered shadow with the challenger, learns
their true scores from the store once the label horizon has passed, and judges the paired
per-request errors (monitoring/shadow.py). A better challenger becomes @champion (every API
process follows the alias); a worse one, or one not better after SHADOW_MAX_LABELLED requests,
loses @challenger; one that cannot be loaded or scores nonsense is recorded as failed and
dropped. The champion is never touched by a failing challenger. Each check's evidence is the
challenger's `shadow.*` version tags, which the MLflow UI and GET /api/v2/models show.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitoring import shadow
from monitoring.config import Settings
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.labels import HORIZON_MINUTES, samples_frame, truth_of
from monitoring.store.engine import open_store
from monitoring.store.metrics import read_samples
from monitoring.store.shadow import ShadowRequest, prune_requests, read_requests

FAILED = "failed"


def review(name: str, settings: Settings, now: datetime) -> dict[str, Any]:
    """Judges `name@challenger`; returns the report (and moves the aliases on a verdict)."""
    report: dict[str, Any] = {"model": name}
    engine = open_store(settings.database_url)
    pruned = prune_requests(engine, now - timedelta(hours=settings.shadow_keep_hours))
    challenger = registry.alias_version(name, registry.CHALLENGER)
    if challenger is None:
        return report | {"status": "no @challenger", "pruned": pruned}
    report["version"] = challenger
    champion = registry.alias_version(name, settings.model_alias)
    if champion is None:
        registry.end_shadow(name, challenger, "promoted", promote_to=settings.model_alias)
        return report | {"status": "promote", "reason": f"no @{settings.model_alias} to beat"}
    report["champion"] = champion
    since = _shadow_since(name, challenger)
    rows = read_requests(engine, name, champion, since, now)
    try:
        challenger_scores = _score(name, challenger, rows)
    except registry.RegistryUnreachable:
        raise
    except Exception as exc:  # whatever the challenger does wrong, it alone pays for it
        reason = f"the challenger failed in shadow: {exc}"
        registry.set_version_tags(name, challenger, {"shadow.reason": reason[:5000]})
        registry.end_shadow(name, challenger, FAILED)
        return report | {"status": FAILED, "reason": reason}
    champion_error, challenger_error = request_errors(rows, challenger_scores, _truth(engine, rows))
    verdict = shadow.judge(
        champion_error,
        challenger_error,
        settings.shadow_min_labelled,
        settings.shadow_max_labelled,
        settings.shadow_alpha,
    )
    evidence = verdict.evidence() | {"champion": champion, "checked_at": now.isoformat()}
    registry.set_version_tags(name, challenger, {f"shadow.{k}": v for k, v in evidence.items()})
    if verdict.decision == "promote":
        registry.end_shadow(name, challenger, "promoted", promote_to=settings.model_alias)
    elif verdict.decision == "reject":
        registry.end_shadow(name, challenger, "rejected")
    return report | {"status": verdict.decision, "rows": len(rows), **evidence}


def request_errors(
    rows: list[ShadowRequest],
    challenger_scores: np.ndarray,
    truth: dict[tuple[str, datetime], float],
) -> tuple[np.ndarray, np.ndarray]:
    """Per labelled request, both versions' mean absolute error over its labelled rows."""
    errors: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row, theirs in zip(rows, challenger_scores.tolist(), strict=True):
        real = truth.get((row.service, row.timestamp))
        if real is not None:
            errors[row.request].append((abs(row.champion_score - real), abs(theirs - real)))
    paired = np.array([np.mean(pairs, axis=0) for pairs in errors.values()]).reshape(-1, 2)
    return paired[:, 0], paired[:, 1]


def _score(name: str, version: str, rows: list[ShadowRequest]) -> np.ndarray:
    """The challenger's scores of `rows`; ModelLoadError or ValueError when it cannot give them."""
    model, _ = registry.load_version(name, version)
    if not rows:
        return np.zeros(0)
    scores = np.asarray(model.predict(np.array([row.inputs for row in rows])), dtype=float)
    scores = scores.reshape(-1)
    if len(scores) != len(rows) or not np.all(np.isfinite(scores)):
        raise ValueError(f"{len(rows)} rows gave {len(scores)} scores, or some are not finite")
    return scores


def _truth(engine: Engine, rows: list[ShadowRequest]) -> dict[tuple[str, datetime], float]:
    if not rows:
        return {}
    start = min(row.timestamp for row in rows)
    end = max(row.timestamp for row in rows) + timedelta(minutes=HORIZON_MINUTES + 1)
    services = sorted({row.service for row in rows})
    with Session(engine) as session:
        samples = read_samples(session, start=start, end=end, services=services)
    return truth_of(samples_frame(samples)) if samples else {}


def _shadow_since(name: str, version: str) -> datetime:
    found = registry.get_version(name, version)
    since = (found.tags or {}).get(registry.SHADOW_SINCE_TAG)
    if since is not None:
        return datetime.fromisoformat(since)
    return datetime.fromtimestamp(int(found.creation_timestamp) / 1000).astimezone()


def verdict_markdown(report: dict[str, Any]) -> str:
    """The Prefect artifact of a shadow verdict."""
    outcome = {
        "promote": "promoted to @champion",
        "reject": "rejected: the champion stays",
        FAILED: "failed in shadow and was dropped: the champion stays",
    }[report["status"]]
    lines = [
        f"# {report['model']} shadow review",
        f"**Decision:** version {report['version']} {outcome}.",
        "",
        f"- reason: {report.get('reason', '')}",
    ]
    if report["status"] != FAILED:
        lines += [
            "",
            "| version | live MAE |",
            "|---|---|",
            f"| challenger v{report['version']} | {report.get('challenger_mae', '')} |",
            f"| champion v{report.get('champion', '')} | {report.get('champion_mae', '')} |",
            "",
            f"- labelled requests: {report.get('labelled', '')}",
            f"- paired Wilcoxon p (better / worse): {report.get('p_better', '')} / "
            f"{report.get('p_worse', '')}",
        ]
    return "\n".join(lines)
