"""The shared work queue: claims, leases, results recorded once, put-backs (both backends)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import catalogue, workqueue
from storage.schema import Prediction, Track


@dataclass(frozen=True)
class Guess:
    genre: str
    confidence: float = 0.9
    model: str = "v1"
    duration: float = 30.0
    format: str = "flac"

    @property
    def probabilities(self) -> dict[str, float]:
        return {self.genre: self.confidence}


def _queue(engine: Engine, n: int) -> list[str]:
    paths = [f"/music/{i:03}.flac" for i in range(n)]
    for path in paths:
        catalogue.mark_pending(engine, path, 100, 1.0)
    return paths


def _claim_when_free(engine: Engine, worker: int, timeout: float = 60) -> list[workqueue.Claim]:
    deadline = time.monotonic() + timeout
    while not (got := workqueue.claim(engine, worker, 10, 30.0)):
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.05)
    return got


def _predictions(engine: Engine, path: str) -> list[tuple[str, bool]]:
    with Session(engine) as s:
        return [(p.genre, p.current) for p in s.scalars(
            select(Prediction).join(Track).where(Track.path == path).order_by(Prediction.id))]


def test_two_workers_never_claim_the_same_track(engine: Engine) -> None:
    paths = _queue(engine, 7)
    a, b = workqueue.register_worker(engine), workqueue.register_worker(engine)
    first = workqueue.claim(engine, a, 4, 30.0)
    second = workqueue.claim(engine, b, 4, 30.0)
    assert [c.path for c in first] == paths[:4]  # oldest first
    assert [c.path for c in second] == paths[4:]
    assert workqueue.claim(engine, b, 4, 30.0) == []
    assert workqueue.holder(engine, paths[0]) == a and workqueue.holder(engine, paths[6]) == b


def test_a_worker_that_stops_beating_loses_its_tracks_to_another(engine: Engine) -> None:
    (path,) = _queue(engine, 1)
    silent, other = workqueue.register_worker(engine), workqueue.register_worker(engine)
    workqueue.claim(engine, silent, 1, 0.3)  # then never a heartbeat: as if killed
    (taken,) = _claim_when_free(engine, other)
    assert taken.path == path and workqueue.holder(engine, path) == other


def test_a_heartbeat_keeps_the_lease(engine: Engine) -> None:
    _queue(engine, 1)
    busy, other = workqueue.register_worker(engine), workqueue.register_worker(engine)
    workqueue.claim(engine, busy, 1, 30.0)
    assert workqueue.heartbeat(engine, busy, 30.0, "v1") == 1
    assert workqueue.claim(engine, other, 1, 30.0) == []
    (info,) = [w for w in workqueue.list_workers(engine) if w.id == busy]
    assert info.model_version == "v1" and info.heartbeat_age < 30


def test_a_worker_whose_lease_was_taken_over_records_nothing(engine: Engine) -> None:
    (path,) = _queue(engine, 1)
    slow, fast = workqueue.register_worker(engine), workqueue.register_worker(engine)
    (held_slow,) = workqueue.claim(engine, slow, 1, 0.3)
    (held_fast,) = _claim_when_free(engine, fast)
    assert workqueue.finish(engine, held_fast, fast, Guess("Jazz"), fingerprint="f",
                            size=100, mtime=1.0)
    assert not workqueue.finish(engine, held_slow, slow, Guess("Rock"), fingerprint="f",
                                size=100, mtime=1.0)
    assert not workqueue.fail(engine, held_slow, slow, "late", size=100, mtime=1.0)
    assert _predictions(engine, path) == [("Jazz", True)]
    info = catalogue.get_track(engine, path)
    assert info is not None and info.status == "ok" and info.genre == "Jazz"
    done = {w.id: w.tracks_done for w in workqueue.list_workers(engine)}
    assert done == {slow: 0, fast: 1}


def test_the_schema_refuses_a_second_current_prediction(engine: Engine) -> None:
    catalogue.record_prediction(engine, "/music/a.flac", Guess("Jazz"), fingerprint=None,
                                size=1, mtime=1.0)
    track = catalogue.get_track(engine, "/music/a.flac")
    assert track is not None
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(Prediction.__table__.insert().values(
            track_id=track.id, model_version="v2", genre="Rock", confidence=0.5,
            probabilities={}, current=True))
    # the normal way: the old one stops being current first
    catalogue.record_prediction(engine, "/music/a.flac", Guess("Rock"), fingerprint=None,
                                size=1, mtime=1.0)
    assert _predictions(engine, "/music/a.flac") == [("Jazz", False), ("Rock", True)]


def test_a_file_queued_again_while_claimed_drops_the_stale_result(engine: Engine) -> None:
    (path,) = _queue(engine, 1)
    worker = workqueue.register_worker(engine)
    (held,) = workqueue.claim(engine, worker, 1, 30.0)
    catalogue.mark_pending(engine, path, 200, 2.0)  # the file changed meanwhile
    assert not workqueue.finish(engine, held, worker, Guess("Jazz"), fingerprint=None,
                                size=100, mtime=1.0)
    (again,) = workqueue.claim(engine, worker, 1, 30.0)
    assert (again.size, again.mtime) == (200, 2.0)


def test_a_file_this_host_cannot_read_goes_back_for_other_hosts(engine: Engine) -> None:
    (path,) = _queue(engine, 1)
    here = workqueue.register_worker(engine, host="nas")
    (held,) = workqueue.claim(engine, here, 1, 30.0, host="nas")
    assert workqueue.put_back(engine, held, here, "not mounted", host="nas")
    info = catalogue.get_track(engine, path)
    assert info is not None and info.status == "pending"
    assert info.error == "not readable on nas: not mounted"
    assert workqueue.claim(engine, here, 1, 30.0, host="nas") == []  # not again from here
    elsewhere = workqueue.register_worker(engine, host="desktop")
    (taken,) = workqueue.claim(engine, elsewhere, 1, 30.0, host="desktop")
    assert workqueue.finish(engine, taken, elsewhere, Guess("Jazz"), fingerprint=None,
                            size=100, mtime=1.0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM claim_skips")).scalar() == 0


def test_a_stopping_worker_gives_its_tracks_back_at_once(engine: Engine) -> None:
    paths = _queue(engine, 3)
    leaving, staying = workqueue.register_worker(engine), workqueue.register_worker(engine)
    workqueue.claim(engine, leaving, 3, 300.0)
    workqueue.stop_worker(engine, leaving)
    assert [c.path for c in workqueue.claim(engine, staying, 3, 30.0)] == paths
    assert [w.id for w in workqueue.list_workers(engine)] == [staying]


def test_claims_keep_the_queue_order(engine: Engine) -> None:
    paths = _queue(engine, 3)
    worker = workqueue.register_worker(engine)
    workqueue.claim(engine, worker, 3, 30.0)
    workqueue.stop_worker(engine, worker)
    with Session(engine) as s:
        order = list(s.scalars(select(Track.path).order_by(Track.updated_at, Track.id)))
        assert s.scalar(select(func.count()).where(Track.claimed_by.is_not(None))) == 0
    assert order == paths
