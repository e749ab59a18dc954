"""tag_backups.pending: what a tag write about to replace a file will leave in it, committed
before the rename, so a kill right after the rename never loses the original genre.

Revision ID: h_tags_backup_pending
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h_tags_backup_pending"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tag_backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tag_backups", schema=None) as batch_op:
        batch_op.drop_column("pending")
