"""relay message request id: the id of the API request that queued an async message

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("relay_messages") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("relay_messages") as batch:
        batch.drop_column("request_id")
