"""orchestrator: anomalies, detector cursors and the healing audit table

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "anomalies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_anomalies_service", "anomalies", ["service"])
    op.create_index("ix_anomalies_start", "anomalies", ["start"])
    op.create_index("ix_anomalies_state", "anomalies", ["state"])
    op.create_table(
        "detector_cursors",
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("scored_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("service"),
    )
    op.create_table(
        "healing_actions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("undo", sa.Text(), nullable=True),
        sa.Column("undo_of", sa.String(length=64), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_healing_actions_service", "healing_actions", ["service"])
    op.create_index("ix_healing_actions_state", "healing_actions", ["state"])
    op.create_index("ix_healing_actions_created_at", "healing_actions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_healing_actions_created_at", table_name="healing_actions")
    op.drop_index("ix_healing_actions_state", table_name="healing_actions")
    op.drop_index("ix_healing_actions_service", table_name="healing_actions")
    op.drop_table("healing_actions")
    op.drop_table("detector_cursors")
    op.drop_index("ix_anomalies_state", table_name="anomalies")
    op.drop_index("ix_anomalies_start", table_name="anomalies")
    op.drop_index("ix_anomalies_service", table_name="anomalies")
    op.drop_table("anomalies")
