"""Portable storage and the shared work queue.

- Case-insensitive genre indexes on ``lower(genre)`` (any backend) instead of SQLite's
  ``COLLATE NOCASE`` ones.
- At most one current prediction per track, enforced by a partial unique index (older
  catalogues that somehow hold two keep the newest as current).
- Tracks carry their claim (``claimed_by``, ``lease_until``); the queue has an index in
  the order it is worked; ``workers``, ``claim_skips`` and ``model_bundles`` tables.
- On PostgreSQL: ``tracks.size`` 64-bit, and the text columns genred compares and sorts
  (path, status, genre, model version) byte-wise (``COLLATE "C"``), as SQLite does.

Revision ID: h_pg_portable_queue
Revises: h_paths_escape_uffff
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h_pg_portable_queue"
down_revision = "h_paths_escape_uffff"
branch_labels = None
depends_on = None

# (table, column, length or None for TEXT)
_BINARY_COLUMNS = (("tracks", "path", None), ("tracks", "status", 16),
                   ("predictions", "model_version", 64), ("predictions", "genre", 128),
                   ("corrections", "genre", 128))


def _text(length: int | None, collation: str | None = None) -> sa.types.TypeEngine[str]:
    return sa.Text(collation=collation) if length is None else sa.String(length, collation)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.drop_index("ix_predictions_current_genre_nocase", table_name="predictions")
        op.drop_index("ix_corrections_active_genre_nocase", table_name="corrections")
    if dialect == "postgresql":
        op.alter_column("tracks", "size", type_=sa.BigInteger(), existing_nullable=True)
        for table, column, length in _BINARY_COLUMNS:
            op.alter_column(table, column, type_=_text(length, "C"), existing_nullable=False)
    op.create_index("ix_predictions_current_genre_lower", "predictions",
                    ["current", sa.text("lower(genre)")])
    op.create_index("ix_corrections_active_genre_lower", "corrections",
                    ["active", sa.text("lower(genre)")])

    predictions = sa.table("predictions", sa.column("id", sa.Integer),
                           sa.column("track_id", sa.Integer), sa.column("current", sa.Boolean))
    newest = (sa.select(sa.func.max(predictions.c.id)).where(predictions.c.current)
              .group_by(predictions.c.track_id))
    op.execute(predictions.update()
               .where(predictions.c.current, predictions.c.id.not_in(newest))
               .values(current=False))
    op.create_index("ix_predictions_one_current", "predictions", ["track_id"], unique=True,
                    sqlite_where=sa.text("current"), postgresql_where=sa.text("current"))

    op.add_column("tracks", sa.Column("claimed_by", sa.Integer(), nullable=True))
    op.add_column("tracks", sa.Column("lease_until", sa.DateTime(timezone=True),
                                      nullable=True))
    op.create_index("ix_tracks_queue", "tracks", ["status", "updated_at", "id"])
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tracks_done", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "claim_skips",
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("track_id", "host"),
    )
    op.create_table(
        "model_bundles",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_table("model_bundles")
    op.drop_table("claim_skips")
    op.drop_table("workers")
    op.drop_index("ix_tracks_queue", table_name="tracks")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch copy of ``tracks`` would
    # drop the old table, and its ON DELETE CASCADE would take every prediction with it.
    op.execute("ALTER TABLE tracks DROP COLUMN lease_until")
    op.execute("ALTER TABLE tracks DROP COLUMN claimed_by")
    op.drop_index("ix_predictions_one_current", table_name="predictions")
    op.drop_index("ix_corrections_active_genre_lower", table_name="corrections")
    op.drop_index("ix_predictions_current_genre_lower", table_name="predictions")
    if dialect == "postgresql":
        for table, column, length in _BINARY_COLUMNS:
            op.alter_column(table, column, type_=_text(length), existing_nullable=False)
        op.alter_column("tracks", "size", type_=sa.Integer(), existing_nullable=True)
    if dialect == "sqlite":
        op.create_index("ix_predictions_current_genre_nocase", "predictions",
                        ["current", sa.text("genre COLLATE NOCASE")])
        op.create_index("ix_corrections_active_genre_nocase", "corrections",
                        ["active", sa.text("genre COLLATE NOCASE")])
