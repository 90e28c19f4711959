"""relay control: RelayCore's shared desired state (drained endpoints, running, policy, tuning)

Existing `relay_endpoints` rows are kept and start undrained; the one `relay_control` row starts
at version 0, running, with no policy or tuning of its own (each process's settings then apply).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("relay_endpoints") as batch:
        batch.add_column(
            sa.Column("drained", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    control = op.create_table(
        "relay_control",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=True),
        sa.Column("adaptive_params", sa.JSON(), nullable=True),
        sa.Column("last_optimization", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(
        control, [{"id": 1, "version": 0, "running": True, "updated_at": datetime.now(UTC)}]
    )


def downgrade() -> None:
    op.drop_table("relay_control")
    with op.batch_alter_table("relay_endpoints") as batch:
        batch.drop_column("drained")
