"""replicas: samples, anomalies and detector cursors keyed by service and replica

`metric_samples` gains `replica` in its primary key (service_id, replica, timestamp); `anomalies`
gains `replica`; `detector_cursors` is keyed by (service, replica). Every existing row is kept
as its service's own row, replica '' (monitoring.samples.SERVICE_ROW), which is what readers
that know nothing of replicas keep reading.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replica() -> sa.Column[str]:
    return sa.Column("replica", sa.String(length=200), nullable=False, server_default="")


def _stamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _samples(name: str, with_replica: bool) -> sa.Table:
    metrics = ("cpu_usage", "memory_usage", "network_latency", "error_rate", "request_count")
    key = ["service_id", "replica", "timestamp"] if with_replica else ["service_id", "timestamp"]
    metadata = sa.MetaData()
    sa.Table("services", metadata, sa.Column("id", sa.Integer(), primary_key=True))  # its key
    return sa.Table(
        name,
        metadata,
        sa.Column("service_id", sa.Integer(), sa.ForeignKey("services.id"), nullable=False),
        *([_replica()] if with_replica else []),
        _stamp("timestamp"),
        *(sa.Column(metric, sa.Float(), nullable=False) for metric in metrics),
        sa.PrimaryKeyConstraint(*key),
    )


def _cursors(name: str, with_replica: bool) -> sa.Table:
    key = ["service", "replica"] if with_replica else ["service"]
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("service", sa.String(length=200), nullable=False),
        *([_replica()] if with_replica else []),
        _stamp("scored_until"),
        _stamp("updated_at"),
        sa.PrimaryKeyConstraint(*key),
    )


SHAPES = {"metric_samples": _samples, "detector_cursors": _cursors}


def _rekey(table: str, with_replica: bool) -> None:
    """The table's primary key gains (or loses) the replica column; every row is copied."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(table, with_replica)
        return
    name = f"{table}_pkey"  # PostgreSQL's default name, which 0001 and 0003 left in place
    key = [c.name for c in SHAPES[table](table, with_replica).primary_key.columns]
    if with_replica:
        op.add_column(table, _replica())
    op.drop_constraint(name, table, type_="primary")
    op.create_primary_key(name, table, key)
    if not with_replica:
        op.drop_column(table, "replica")


def _rebuild(table: str, with_replica: bool) -> None:
    """SQLite cannot change a primary key in place: a new table, the rows copied, renamed."""
    new = SHAPES[table](f"_new_{table}", with_replica)
    new.create(op.get_bind())
    columns = ", ".join(c.name for c in new.columns if c.name != "replica")
    op.execute(f"INSERT INTO {new.name} ({columns}) SELECT {columns} FROM {table}")
    op.drop_table(table)
    op.rename_table(new.name, table)


def upgrade() -> None:
    for table in SHAPES:
        _rekey(table, with_replica=True)
    with op.batch_alter_table("anomalies") as batch:
        batch.add_column(_replica())


def downgrade() -> None:
    # A replica's own rows have no place in the old keys: only the service rows are kept.
    for table in ("metric_samples", "detector_cursors", "anomalies"):
        op.execute(f"DELETE FROM {table} WHERE replica <> ''")
    with op.batch_alter_table("anomalies") as batch:
        batch.drop_column("replica")
    for table in SHAPES:
        _rekey(table, with_replica=False)
