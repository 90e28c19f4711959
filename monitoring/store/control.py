"""RelayCore's shared desired state in the store: endpoints (and which are drained), running or
stopped, the policy and the tuned adaptive parameters, behind one version counter.

Every change runs in one transaction that first bumps `relay_control.version`: the row lock
(PostgreSQL) or the write lock (SQLite) that takes serialises the writers, so a change reads the
state it changes without a race, and a change that turns out to change nothing is rolled back.
On PostgreSQL the same transaction sends `NOTIFY relaycore_control` with the new version, which
its listeners receive when it commits. Readers compare one integer, `version()`, and read the
whole state, `desired()`, only when it moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from monitoring.store.durable import now_utc
from monitoring.store.tables import RelayControlRow, RelayEndpointRow

CHANNEL = "relaycore_control"  # the PostgreSQL NOTIFY channel; the payload is the new version
CONTROL_ID = 1


class EndpointExists(ValueError):
    """The desired state already holds an endpoint under that name."""


class NoSuchEndpoint(KeyError):
    """The desired state holds no endpoint under that name."""


class _Unchanged(Exception):
    """Raised inside a change that found nothing to do, so that its bump is rolled back."""


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str
    url: str
    service: str | None
    max_concurrency: int
    drained: bool = False


@dataclass(frozen=True, slots=True)
class DesiredState:
    version: int
    running: bool
    policy: str | None  # None: each process's RELAYCORE_POLICY
    adaptive_params: dict[str, Any] | None
    last_optimization: dict[str, Any] | None
    endpoints: tuple[EndpointSpec, ...]


def version(engine: Engine) -> int:
    """The desired state's version: the one cheap read a watcher makes."""
    with engine.connect() as connection:
        found = connection.scalar(
            select(RelayControlRow.version).where(RelayControlRow.id == CONTROL_ID)
        )
    return int(found or 0)


def desired(engine: Engine) -> DesiredState:
    """The whole desired state; its version is read first, so the rest is at least that new."""
    with engine.connect() as connection:
        row = connection.execute(
            select(RelayControlRow).where(RelayControlRow.id == CONTROL_ID)
        ).one()
        endpoints = connection.execute(select(RelayEndpointRow).order_by(RelayEndpointRow.name))
        specs = tuple(
            EndpointSpec(e.name, e.url, e.service, e.max_concurrency, bool(e.drained))
            for e in endpoints
        )
    return DesiredState(
        int(row.version),
        bool(row.running),
        row.policy,
        row.adaptive_params,
        row.last_optimization,
        specs,
    )


def _bump(connection: Connection) -> int:
    statement = (
        update(RelayControlRow)
        .where(RelayControlRow.id == CONTROL_ID)
        .values(version=RelayControlRow.version + 1, updated_at=now_utc())
        .returning(RelayControlRow.version)
    )
    new = int(connection.execute(statement).scalar_one())
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": str(new)}
        )
    return new


def _row(connection: Connection, name: str) -> Any:
    return connection.execute(select(RelayEndpointRow).where(RelayEndpointRow.name == name)).first()


def add_endpoint(engine: Engine, spec: EndpointSpec) -> int:
    """Adds an endpoint; raises EndpointExists. Returns the new version."""
    with engine.begin() as connection:
        new = _bump(connection)
        if _row(connection, spec.name) is not None:
            raise EndpointExists(f"endpoint {spec.name!r} is already registered")
        connection.execute(insert(RelayEndpointRow), [_values(spec)])
    return new


def _values(spec: EndpointSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "url": spec.url,
        "service": spec.service,
        "max_concurrency": spec.max_concurrency,
        "drained": spec.drained,
        "created_at": now_utc(),
    }


def remove_endpoint(engine: Engine, name: str) -> tuple[EndpointSpec, int]:
    """Deletes an endpoint for good; raises NoSuchEndpoint. Returns it and the new version."""
    with engine.begin() as connection:
        new = _bump(connection)
        found = _row(connection, name)
        if found is None:
            raise NoSuchEndpoint(name)
        connection.execute(delete(RelayEndpointRow).where(RelayEndpointRow.name == name))
    return _spec(found), new


def _spec(row: Any) -> EndpointSpec:
    return EndpointSpec(row.name, row.url, row.service, row.max_concurrency, bool(row.drained))


def set_drained(engine: Engine, name: str, drained: bool) -> tuple[EndpointSpec, int]:
    """Drains an endpoint (kept, but sent nothing new) or puts it back; raises NoSuchEndpoint."""
    try:
        with engine.begin() as connection:
            new = _bump(connection)
            found = _row(connection, name)
            if found is None:
                raise NoSuchEndpoint(name)
            if bool(found.drained) == drained:
                raise _Unchanged
            connection.execute(
                update(RelayEndpointRow)
                .where(RelayEndpointRow.name == name)
                .values(drained=drained)
            )
    except _Unchanged:
        return _spec(found), version(engine)
    spec = _spec(found)
    return EndpointSpec(spec.name, spec.url, spec.service, spec.max_concurrency, drained), new


def seed_endpoints(engine: Engine, specs: Iterable[EndpointSpec]) -> int:
    """Puts a process's configured endpoints into the desired state: a missing one is added, one
    stored with another URL, service or limit takes the configured ones (drained stays as it is).
    Returns the version, bumped only if something changed."""
    wanted = list(specs)
    if not wanted:
        return version(engine)
    try:
        with engine.begin() as connection:
            new = _bump(connection)
            if not _seed(connection, wanted):
                raise _Unchanged
    except _Unchanged:
        return version(engine)
    return new


def _seed(connection: Connection, wanted: list[EndpointSpec]) -> bool:
    changed = False
    for spec in wanted:
        found = _row(connection, spec.name)
        if found is None:
            connection.execute(insert(RelayEndpointRow), [_values(spec)])
        elif (found.url, found.service, found.max_concurrency) != (
            spec.url,
            spec.service,
            spec.max_concurrency,
        ):
            connection.execute(
                update(RelayEndpointRow)
                .where(RelayEndpointRow.name == spec.name)
                .values(url=spec.url, service=spec.service, max_concurrency=spec.max_concurrency)
            )
        else:
            continue
        changed = True
    return changed


def set_control(engine: Engine, **values: Any) -> int:
    """Sets `running`, `policy`, `adaptive_params` or `last_optimization`; returns the version."""
    allowed = {"running", "policy", "adaptive_params", "last_optimization"}
    if not values or set(values) - allowed:
        raise ValueError(f"set_control takes some of {sorted(allowed)}, got {sorted(values)}")
    with engine.begin() as connection:
        new = _bump(connection)
        connection.execute(
            update(RelayControlRow).where(RelayControlRow.id == CONTROL_ID).values(**values)
        )
    return new
