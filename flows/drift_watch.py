"""The drift watch: a served model's live inputs against the reference profile logged with it.

When the champion's inputs over the last DRIFT_WINDOW_MINUTES have drifted (PSI above
DRIFT_PSI_THRESHOLD on any feature), a Prefect event `automatrix.model.drift` is emitted with
the model, its version and the evidence, at most once per DRIFT_COOLDOWN_HOURS per version. The
deployment trigger in prefect.yaml that expects it starts the model's training. Each check's
evidence is also the version tag `drift.last_check`, so the MLflow UI shows it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Final

import pandas as pd
from prefect.events import emit_event
from sqlalchemy.orm import Session

from monitoring import drift
from monitoring.config import OrchestratorSettings
from monitoring.neuroweaver import registry
from monitoring.neuroweaver.labels import samples_frame
from monitoring.store.engine import open_store
from monitoring.store.metrics import read_samples

DRIFT_EVENT: Final = "automatrix.model.drift"
LAST_EVENT_TAG: Final = "drift.last_event_at"
LAST_CHECK_TAG: Final = "drift.last_check"


def model_resource(name: str, version: str) -> dict[str, str]:
    """The event's resource: what a deployment trigger matches on."""
    return {
        "prefect.resource.id": f"automatrix.model.{name}",
        "prefect.resource.name": name,
        "automatrix.model.version": version,
    }


def live_inputs(database_url: str, since: datetime, until: datetime) -> pd.DataFrame:
    """The stored samples in [since, until) as a frame of the model's inputs."""
    with Session(open_store(database_url)) as session:
        samples = read_samples(session, start=since, end=until)
    return samples_frame(samples)


def cooling(tags: dict[str, str], now: datetime, hours: float) -> bool:
    """Whether this version's last drift event is more recent than the cool-down."""
    last = tags.get(LAST_EVENT_TAG)
    return last is not None and now - datetime.fromisoformat(last) < timedelta(hours=hours)


def watch(
    name: str, alias: str, database_url: str, config: OrchestratorSettings, now: datetime
) -> dict[str, Any]:
    """Checks `name@alias`; returns the report (and emits the event when it drifted)."""
    report: dict[str, Any] = {"model": name, "alias": alias}
    version = registry.alias_version(name, alias)
    if version is None:
        return report | {"status": f"no @{alias}"}
    found = registry.get_version(name, version)
    report["version"] = version
    try:
        profile = registry.reference_profile(found.run_id)
    except registry.NotFound:
        return report | {"status": "no reference profile logged with this version"}
    live = live_inputs(database_url, now - timedelta(minutes=config.drift_window_minutes), now)
    if len(live) < config.drift_min_rows:
        return report | {"status": f"{len(live)} live rows, fewer than {config.drift_min_rows}"}
    checked = drift.check(profile, live, config.drift_psi_threshold)
    evidence = checked.evidence() | {"window_minutes": config.drift_window_minutes}
    tags = {LAST_CHECK_TAG: json.dumps(evidence | {"at": now.isoformat()})}
    emitted = checked.drifted and not cooling(
        dict(found.tags or {}), now, config.drift_cooldown_hours
    )
    if emitted:
        emit_event(
            DRIFT_EVENT,
            resource=model_resource(name, version),
            payload={"model": name, "version": version, "alias": alias, **evidence},
        )
        tags[LAST_EVENT_TAG] = now.isoformat()
    registry.set_version_tags(name, version, tags)
    status = "drifted" if checked.drifted else "stable"
    return report | {"status": status, "event_emitted": emitted, **evidence}
