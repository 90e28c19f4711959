"""recorded incidents: `incidents` gains `source` and `description`

The simulator's ground truth keeps `source` 'simulator'; an incident a user records through
`POST /api/v2/ai/incidents` is 'recorded', with an optional description. Both label the
failure-risk training.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=20), nullable=False, server_default="simulator")
        )
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("description")
        batch_op.drop_column("source")
