"""The catalogue's tables, as typed SQLAlchemy 2.x models.

The catalogue is the single source of truth genred keeps: what tracks exist, what each
model predicted for them (history kept), what users corrected (history kept), which model
versions exist and which is active, what each retrain decided, and the tag values genred
replaced (so `genred tags restore` can put them back).

The work queue is the set of tracks with ``status == "pending"``: marking a track pending
and recording its prediction (which sets it ``ok``) are each one short transaction, so after
a crash every pending track is processed exactly once more and none twice.

Any change here needs an Alembic migration in ``storage/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.paths import PathText


def utcnow() -> datetime:
    return datetime.now(UTC)


def binary_text(length: int | None = None) -> String:
    """A text column compared and sorted byte by byte on every backend: SQLite does so by
    default; on PostgreSQL the column is declared ``COLLATE "C"``, so ``lower()`` folds
    ASCII only (as SQLite's does), path ranges (``folder + '/' <= path < folder + '0'``)
    select exactly the folder, and ``ORDER BY`` gives the same order as on SQLite."""
    plain = Text() if length is None else String(length)
    binary = Text(collation="C") if length is None else String(length, collation="C")
    return plain.with_variant(binary, "postgresql")


# SQLite's INTEGER is already 64-bit; a plain INTEGER there keeps old catalogues as they are.
BIG_INTEGER = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


# Track.status values
PENDING = "pending"  # queued for classification
OK = "ok"  # classified; has a current prediction
ERROR = "error"  # could not be decoded/classified; see Track.error
MISSING = "missing"  # file gone; history kept, matched back by fingerprint if it reappears
STATUSES = (PENDING, OK, ERROR, MISSING)


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)  # see storage/paths.py
    size: Mapped[int | None] = mapped_column(BIG_INTEGER)
    mtime: Mapped[float | None] = mapped_column(Float)
    # Hash of the audio stream (not the tags): a tag edit does not change it, a move keeps it.
    fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    duration: Mapped[float | None] = mapped_column(Float)
    format: Mapped[str | None] = mapped_column(String(32))
    # What the file's tags say, read when it is classified (storage/titles.py).
    title: Mapped[str | None] = mapped_column(Text)
    artist: Mapped[str | None] = mapped_column(Text)
    album: Mapped[str | None] = mapped_column(Text)
    album_artist: Mapped[str | None] = mapped_column(Text)
    track_number: Mapped[int | None] = mapped_column(Integer)
    year: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(binary_text(16), default=PENDING, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    # The claim on a pending track (storage/workqueue.py): which worker has it and until
    # when; a claim whose lease ran out may be taken by any worker.
    claimed_by: Mapped[int | None] = mapped_column(Integer)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (
        # The work queue in order (storage/workqueue.py claims from its head).
        Index("ix_tracks_queue", "status", "updated_at", "id"),
    )

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="track", cascade="all, delete-orphan", order_by="Prediction.id"
    )
    corrections: Mapped[list[Correction]] = relationship(
        back_populates="track", cascade="all, delete-orphan", order_by="Correction.id"
    )
    tag_backups: Mapped[list[TagBackup]] = relationship(
        back_populates="track", cascade="all, delete-orphan", order_by="TagBackup.id"
    )


class Prediction(Base):
    """One model's answer for one track. At most one row per track has ``current`` set:
    a unique index over the current rows says so to the database itself, so two workers
    that both finished a track can never leave two current answers."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_track_current", "track_id", "current"),
        Index("ix_predictions_current_genre", "current", "genre"),
        # Case-insensitive genre filters (`genred query --genre jazz`), on any backend.
        Index("ix_predictions_current_genre_lower", "current", text("lower(genre)")),
        Index("ix_predictions_one_current", "track_id", unique=True,
              sqlite_where=text("current"), postgresql_where=text("current")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(binary_text(64), index=True)
    genre: Mapped[str] = mapped_column(binary_text(128))
    # Every genre of the answer, main first (``genre`` is the first); NULL in rows older
    # than several genres per track means ``[genre]``.
    genres: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    confidence: Mapped[float] = mapped_column(Float, index=True)
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    track: Mapped[Track] = relationship(back_populates="predictions")


# Correction.source values
USER = "user"
TAG = "tag"
IMPORT = "import"


class Correction(Base):
    """A label for a track. The newest ``active`` one is the track's corrected genre;
    ``genred uncorrect`` deactivates rather than deletes, so history is never lost."""

    __tablename__ = "corrections"
    __table_args__ = (
        Index("ix_corrections_track_active", "track_id", "active"),
        # Case-insensitive genre filters, on any backend.
        Index("ix_corrections_active_genre_lower", "active", text("lower(genre)")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    genre: Mapped[str] = mapped_column(binary_text(128), index=True)
    genres: Mapped[list[Any] | None] = mapped_column(  # as Prediction's
        JSON(none_as_null=True), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default=USER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )

    track: Mapped[Track] = relationship(back_populates="corrections")


class ModelVersion(Base):
    """A model bundle on disk that genred knows of. One row has ``active`` set."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    labels: Mapped[list[Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelBundle(Base):
    """The files of an activated model bundle, so a worker host that does not share the
    model store can still load it (``storage/bundles.py``)."""

    __tablename__ = "model_bundles"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    meta: Mapped[str] = mapped_column(Text)  # model.json
    weights: Mapped[bytes] = mapped_column(LargeBinary)  # model.safetensors
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkerHost(Base):
    """A process working the queue (`genred worker`, or `genred run` classifying): where it
    runs, when it last said it is alive, and how many tracks it recorded."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="worker")  # worker | daemon
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tracks_done: Mapped[int] = mapped_column(Integer, default=0)
    model_version: Mapped[str | None] = mapped_column(String(64))


class ClaimSkip(Base):
    """A host that could not read a track's file (not mounted there, no permission): it
    put the track back with ``reason`` and does not claim it again for a while; other
    hosts still may."""

    __tablename__ = "claim_skips"
    __table_args__ = (PrimaryKeyConstraint("track_id", "host"),)

    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingRun(Base):
    """One retrain attempt and what it decided (promoted / rejected / skipped / failed)."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | cli | train
    base_model: Mapped[str | None] = mapped_column(String(64))
    new_model: Mapped[str | None] = mapped_column(String(64))
    n_labels: Mapped[int] = mapped_column(Integer, default=0)
    old_accuracy: Mapped[float | None] = mapped_column(Float)
    new_accuracy: Mapped[float | None] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Newest Correction.id included, so "new labels since the last run" is one comparison.
    last_correction_id: Mapped[int | None] = mapped_column(Integer)


class TagBackup(Base):
    """The genre-related tag values a file had before genred first wrote to it
    (``original``), and what genred last wrote (``written``). Restore puts ``original``
    back only while the file still holds ``written`` (or ``pending``). ``pending`` is what a
    write about to replace the file will leave in it: committed before the rename, cleared
    (moved to ``written``) after it, so a kill in between loses nothing."""

    __tablename__ = "tag_backups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    original: Mapped[dict[str, Any]] = mapped_column(JSON)
    written: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    restored: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    track: Mapped[Track] = relationship(back_populates="tag_backups")


class State(Base):
    """Small key/value facts: last scan time, daemon heartbeat and pid, ..."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
