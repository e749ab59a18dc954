"""The shared work queue: workers on any host claim pending tracks, with a lease.

The queue itself is unchanged (tracks with ``status == "pending"``, oldest first); what is
added is who is working on which track. A worker (``genred worker``, or ``genred run``
classifying) registers a row in ``workers``, then:

- ``claim`` takes up to ``n`` pending tracks nobody holds (or whose lease ran out): on
  PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``, so claimers on many hosts never wait
  for each other nor take the same track; on SQLite the write transaction's lock does it;
- ``heartbeat`` (every few seconds, from a thread) extends the leases it holds; a worker
  killed with ``kill -9``, or cut off from the database, stops extending them, and once a
  lease runs out any other worker may claim the track;
- ``finish`` / ``fail`` record the result only while the claim is still this worker's
  (checked under the track's row lock): a worker whose lease was taken over records
  nothing, and the partial unique index on current predictions guarantees it even so;
- ``put_back`` returns a track this host cannot read (not mounted, no permission), with
  the reason; this host does not claim it again for ``SKIP_RETRY_SECONDS``, others may.

Times come from the database's clock on PostgreSQL (hosts' clocks may differ).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from storage.catalogue import PredictionLike, release_claim, store_prediction, track_at
from storage.db import reading, writing
from storage.genres import MultiGenre
from storage.names import safe_text
from storage.schema import ERROR, PENDING, ClaimSkip, Track, WorkerHost, utcnow
from storage.titles import TitleTags

SKIP_RETRY_SECONDS = 3600.0  # a host that could not read a file tries it again after this
FORGET_AFTER = timedelta(days=1)  # workers silent this long are recorded as stopped


@dataclass(frozen=True)
class Claim:
    """A pending track a worker holds: the catalogue's path and the size and mtime
    recorded when it was queued (None when not known)."""

    track_id: int
    path: str
    size: int | None
    mtime: float | None


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    host: str
    pid: int
    kind: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    tracks_done: int
    model_version: str | None
    heartbeat_age: float  # seconds since the last heartbeat, by the database's clock


def db_now(s: Session) -> datetime:
    """The database's current time (PostgreSQL), or this host's (SQLite: one host)."""
    if s.get_bind().dialect.name == "postgresql":
        value = s.execute(text("SELECT now()")).scalar_one()
        assert isinstance(value, datetime)
        return value
    return utcnow()


def register_worker(engine: Engine, kind: str = "worker", host: str | None = None,
                    pid: int | None = None) -> int:
    """A new ``workers`` row for this process; returns its id."""
    with Session(writing(engine)) as s, s.begin():
        now = db_now(s)
        s.execute(update(WorkerHost)
                  .where(WorkerHost.stopped_at.is_(None),
                         WorkerHost.heartbeat_at < now - FORGET_AFTER)
                  .values(stopped_at=WorkerHost.heartbeat_at))
        row = WorkerHost(host=host or socket.gethostname(),
                         pid=os.getpid() if pid is None else pid, kind=kind,
                         started_at=now, heartbeat_at=now, tracks_done=0)
        s.add(row)
        s.flush()
        return row.id


def heartbeat(engine: Engine, worker_id: int, lease_seconds: float,
              model_version: str | None = None) -> int:
    """This worker is alive: its leases run ``lease_seconds`` from now. Returns how many
    tracks it holds."""
    # Tracks first, then the workers row: the order ``finish`` locks them in (the other
    # order deadlocks this thread against the worker's own recording).
    with Session(writing(engine)) as s, s.begin():
        now = db_now(s)
        result = s.execute(
            update(Track).where(Track.claimed_by == worker_id, Track.status == PENDING)
            .values(lease_until=now + timedelta(seconds=lease_seconds),
                    updated_at=Track.updated_at)  # not a change of the track: keep its place
            .execution_options(synchronize_session=False))
        values: dict[str, object] = {"heartbeat_at": now}
        if model_version is not None:
            values["model_version"] = model_version
        s.execute(update(WorkerHost).where(WorkerHost.id == worker_id).values(**values))
        return int(getattr(result, "rowcount", 0) or 0)


def stop_worker(engine: Engine, worker_id: int) -> None:
    """This worker stops: the tracks it holds go back to the queue at once."""
    with Session(writing(engine)) as s, s.begin():
        now = db_now(s)
        s.execute(update(Track).where(Track.claimed_by == worker_id)
                  .values(claimed_by=None, lease_until=None, updated_at=Track.updated_at)
                  .execution_options(synchronize_session=False))
        s.execute(update(WorkerHost).where(WorkerHost.id == worker_id)
                  .values(stopped_at=now, heartbeat_at=now))


def claim(engine: Engine, worker_id: int, n: int, lease_seconds: float,
          host: str | None = None, exclude: Iterable[str] = ()) -> list[Claim]:
    """Up to ``n`` pending tracks for this worker, oldest first: tracks no one holds, or
    whose holder's lease ran out, and that this ``host`` did not put back lately (nor
    those whose catalogue path is in ``exclude``: put aside by the caller for now)."""
    host = host or socket.gethostname()
    skip = sorted(set(exclude))
    with Session(writing(engine)) as s, s.begin():
        now = db_now(s)
        skipped = exists().where(
            ClaimSkip.track_id == Track.id, ClaimSkip.host == host,
            ClaimSkip.created_at > now - timedelta(seconds=SKIP_RETRY_SECONDS))
        rows = s.execute(
            select(Track.id, Track.path, Track.size, Track.mtime)
            .where(Track.status == PENDING,
                   or_(Track.lease_until.is_(None), Track.lease_until < now), ~skipped,
                   *([Track.path.not_in(skip)] if skip else []))
            .order_by(Track.updated_at, Track.id).limit(n)
            .with_for_update(skip_locked=True, of=Track)
        ).all()
        if not rows:
            return []
        s.execute(update(Track).where(Track.id.in_([r.id for r in rows]))
                  .values(claimed_by=worker_id,
                          lease_until=now + timedelta(seconds=lease_seconds),
                          updated_at=Track.updated_at)
                  .execution_options(synchronize_session=False))
        return [Claim(r.id, r.path, r.size, r.mtime) for r in rows]


def _held(s: Session, held: Claim, worker_id: int) -> Track | None:
    """The claimed track, row-locked, if it is still this worker's pending claim."""
    track = track_at(s, held.path)
    if track is None or track.claimed_by != worker_id or track.status != PENDING:
        return None
    return track


def _done(s: Session, track: Track, worker_id: int) -> None:
    s.execute(update(WorkerHost).where(WorkerHost.id == worker_id)
              .values(tracks_done=WorkerHost.tracks_done + 1))
    s.execute(delete(ClaimSkip).where(ClaimSkip.track_id == track.id))


def finish(engine: Engine, held: Claim, worker_id: int, prediction: PredictionLike, *,
           fingerprint: str | None, size: int | None, mtime: float | None,
           multi: MultiGenre | None = None, titles: TitleTags | None = None) -> bool:
    """Record ``prediction`` for the claimed track and release it; False (nothing recorded)
    when the claim is no longer this worker's (lease taken over, file queued again)."""
    with Session(writing(engine)) as s, s.begin():
        track = _held(s, held, worker_id)
        if track is None:
            return False
        store_prediction(s, track, prediction, fingerprint=fingerprint, size=size, mtime=mtime,
                         multi=multi, titles=titles)
        _done(s, track, worker_id)
        return True


def fail(engine: Engine, held: Claim, worker_id: int, reason: str, *, size: int | None,
         mtime: float | None) -> bool:
    """The file was read but is not audio genred can classify: the track becomes ``error``
    for everyone (every host would fail on the same bytes). False if no longer ours."""
    with Session(writing(engine)) as s, s.begin():
        track = _held(s, held, worker_id)
        if track is None:
            return False
        track.status, track.error = ERROR, safe_text(" ".join(reason.split())[:500])
        track.size, track.mtime = size, mtime
        track.last_seen = utcnow()
        release_claim(track)
        _done(s, track, worker_id)
        return True


def put_back(engine: Engine, held: Claim, worker_id: int, reason: str,
             host: str | None = None) -> bool:
    """This host cannot read the file: the track stays pending with the reason in its
    ``error``, and is not claimed again from this host for a while (see ClaimSkip)."""
    host = host or socket.gethostname()
    with Session(writing(engine)) as s, s.begin():
        track = _held(s, held, worker_id)
        if track is None:
            return False
        line = safe_text(" ".join(reason.split())[:400])
        track.error = f"not readable on {host}: {line}"
        release_claim(track)  # and it goes to the back of the queue
        s.merge(ClaimSkip(track_id=track.id, host=host, reason=line, created_at=db_now(s)))
        return True


def holder(engine: Engine, path: str) -> int | None:
    """The worker id holding the track at catalogue ``path``, if any (for tests/status)."""
    with Session(reading(engine)) as s:
        return s.scalar(select(Track.claimed_by).where(Track.path == path))


def list_workers(engine: Engine, include_stopped: bool = False) -> list[WorkerInfo]:
    """The registered workers, newest first (running ones unless ``include_stopped``)."""
    with Session(reading(engine)) as s:
        now = db_now(s)
        query = select(WorkerHost).order_by(WorkerHost.id.desc())
        if not include_stopped:
            query = query.where(WorkerHost.stopped_at.is_(None))
        rows = s.scalars(query).all()
        return [WorkerInfo(w.id, w.host, w.pid, w.kind, w.started_at, w.heartbeat_at,
                           w.stopped_at, w.tracks_done, w.model_version,
                           _age(now, w.heartbeat_at)) for w in rows]


def _age(now: datetime, then: datetime) -> float:
    if then.tzinfo is None:  # SQLite hands back naive UTC
        now = now.replace(tzinfo=None)
    return max(0.0, (now - then).total_seconds())


def claimed_count(engine: Engine) -> int:
    """Tracks currently held by a worker."""
    with Session(reading(engine)) as s:
        return int(s.scalar(select(func.count(Track.id))
                            .where(Track.claimed_by.is_not(None),
                                   Track.status == PENDING)) or 0)


def release(engine: Engine, held: Claim, worker_id: int) -> bool:
    """Give a claimed track back untouched (the worker is stopping before it got to it)."""
    with Session(writing(engine)) as s, s.begin():
        track = _held(s, held, worker_id)
        if track is None:
            return False
        release_claim(track)
        return True
