"""Several genres per track, and what a file's tags say about it.

- ``predictions.genres`` and ``corrections.genres``: the answer's genres in order, the
  main one first (``genre`` stays the main one, so every query on it keeps working). Rows
  written before have NULL there, read as ``[genre]``: nothing is rewritten, a large
  catalogue upgrades at once.
- ``tracks.title``, ``artist``, ``album``, ``album_artist``, ``track_number``, ``year``:
  read from the file's tags when it is classified (NULL until then).

Revision ID: h_multi_genres_titles
Revises: h_pg_portable_queue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h_multi_genres_titles"
down_revision = "h_pg_portable_queue"
branch_labels = None
depends_on = None

_TRACK_TEXT = ("title", "artist", "album", "album_artist")
_TRACK_NUMBERS = ("track_number", "year")


def upgrade() -> None:
    op.add_column("predictions", sa.Column("genres", sa.JSON(), nullable=True))
    op.add_column("corrections", sa.Column("genres", sa.JSON(), nullable=True))
    for name in _TRACK_TEXT:
        op.add_column("tracks", sa.Column(name, sa.Text(), nullable=True))
    for name in _TRACK_NUMBERS:
        op.add_column("tracks", sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        for name in (*_TRACK_TEXT, *_TRACK_NUMBERS):
            batch.drop_column(name)
    with op.batch_alter_table("corrections") as batch:
        batch.drop_column("genres")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("genres")
