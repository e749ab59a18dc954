"""Paths are stored through ``storage.paths.PathText``, which escapes the bytes of a name
that are not UTF-8 as U+FFFF + two hex digits, and a real U+FFFF as the escapes of its own
three bytes. Earlier catalogues could hold only valid UTF-8 paths, which are stored
unchanged, except for a name with a U+FFFF in it (a noncharacter; practically never in a
file name): this rewrites those few rows into the escaped form, so they read back as the
same name. Nothing else changes.

Revision ID: h_paths_escape_uffff
Revises: h_tags_backup_pending
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h_paths_escape_uffff"
down_revision = "h_tags_backup_pending"
branch_labels = None
depends_on = None

MARK = "\uffff"
ESCAPED_MARK = "".join(f"{MARK}{b:02x}" for b in MARK.encode("utf-8"))


def upgrade() -> None:
    conn = op.get_bind()
    # A one-off data fix: LIKE with one literal character between two %, on any database.
    rows = conn.execute(sa.text("SELECT id, path FROM tracks WHERE path LIKE :pattern"),
                        {"pattern": f"%{MARK}%"}).fetchall()
    for track_id, path in rows:
        conn.execute(sa.text("UPDATE tracks SET path = :path WHERE id = :id"),
                     {"path": path.replace(MARK, ESCAPED_MARK), "id": track_id})


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, path FROM tracks WHERE path LIKE :pattern"),
                        {"pattern": f"%{MARK}%"}).fetchall()
    for track_id, path in rows:
        if ESCAPED_MARK in path and path.replace(ESCAPED_MARK, "").count(MARK) == 0:
            conn.execute(sa.text("UPDATE tracks SET path = :path WHERE id = :id"),
                         {"path": path.replace(ESCAPED_MARK, MARK), "id": track_id})
