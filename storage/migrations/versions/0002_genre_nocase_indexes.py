"""Case-insensitive genre indexes, so `genred query --genre jazz` stays fast on 100,000
tracks (the filter starts from the tracks whose current prediction or active correction
has that genre instead of scanning every track).

SQLite only: ``COLLATE NOCASE`` exists nowhere else. Migration ``h_pg_portable_queue``
replaces these with ``lower(genre)`` indexes on every backend.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index(
        "ix_predictions_current_genre_nocase",
        "predictions",
        ["current", sa.text("genre COLLATE NOCASE")],
    )
    op.create_index(
        "ix_corrections_active_genre_nocase",
        "corrections",
        ["active", sa.text("genre COLLATE NOCASE")],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_corrections_active_genre_nocase", table_name="corrections")
    op.drop_index("ix_predictions_current_genre_nocase", table_name="predictions")
