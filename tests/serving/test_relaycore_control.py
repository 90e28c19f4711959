"""RelayCore's desired state in the store: the migration that brings it, and its version counter."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from monitoring.store import control, migrate
from monitoring.store.control import EndpointSpec
from monitoring.store.engine import open_store
from tests.support.migrations import store_at


def test_migrate_to_control_plane_keeps_registered_endpoints(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    endpoint = (
        "INSERT INTO relay_endpoints (name, url, service, max_concurrency, created_at)"
        " VALUES ('kept', 'http://h/kept', 'svc', 7, :at)"
    )
    engine = store_at(url, "0005", (endpoint, {"at": datetime.now(UTC)}))
    migrate.upgrade(url)
    found = control.desired(engine)
    assert found.endpoints == (EndpointSpec("kept", "http://h/kept", "svc", 7, drained=False),)
    assert (found.version, found.running, found.policy) == (0, True, None)


def test_change_desired_state_bumps_the_version_once_per_change(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    spec = EndpointSpec("a", "http://h/a", None, 4)
    assert control.add_endpoint(engine, spec) == 1
    with pytest.raises(control.EndpointExists):
        control.add_endpoint(engine, spec)  # refused, and rolled back with its bump
    assert control.set_drained(engine, "a", True)[1] == 2
    assert control.set_drained(engine, "a", True)[1] == 2  # already drained: nothing changed
    assert control.set_control(engine, policy="round_robin", running=False) == 3
    assert control.version(engine) == 3
    found = control.desired(engine)
    assert found.endpoints[0].drained and found.policy == "round_robin" and not found.running


def test_seed_configured_endpoints_changes_only_what_differs(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    first = [EndpointSpec("a", "http://h/a", None, 4)]
    assert control.seed_endpoints(engine, first) == 1
    control.set_drained(engine, "a", True)
    assert control.seed_endpoints(engine, first) == 2  # the same again: no new version
    moved = [EndpointSpec("a", "http://h/a2", None, 4)]
    assert control.seed_endpoints(engine, moved) == 3
    assert control.desired(engine).endpoints == (EndpointSpec("a", "http://h/a2", None, 4, True),)


@pytest.mark.postgres
def test_change_desired_state_on_postgres_notifies_listeners(postgres_url: str) -> None:
    engine = open_store(postgres_url)
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {control.CHANNEL}")
        new = control.set_control(engine, policy="least_request")
        notices = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notices] == [(control.CHANNEL, str(new))]
    engine.dispose()
