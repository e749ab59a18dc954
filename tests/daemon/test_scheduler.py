"""The retrain schedule: JSON job store in the catalogue, missed runs caught up once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from daemon import scheduler as sched
from storage.db import open_catalogue


def _url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    open_catalogue(url).dispose()
    return url


def _record_calls(name: str) -> tuple[list[float], threading.Event]:
    calls: list[float] = []
    done = threading.Event()

    def job() -> None:
        calls.append(time.monotonic())
        done.set()

    sched.register(name, job)
    return calls, done


def _set_next_run(url: str, job: str, when: datetime) -> None:
    engine = open_catalogue(url)
    with engine.begin() as c:
        raw = c.execute(text("SELECT job_state FROM apscheduler_jobs WHERE id = :j"), {"j": job})
        state = json.loads(raw.scalar())
        state["next_run_time"] = when.isoformat()
        c.execute(
            text("UPDATE apscheduler_jobs SET next_run_time = :t, job_state = :s WHERE id = :j"),
            {"t": when.timestamp(), "s": json.dumps(state).encode(), "j": job},
        )
    engine.dispose()


def test_first_start_schedules_the_next_cron_time_without_running(tmp_path: Path) -> None:
    url = _url(tmp_path)
    calls, _ = _record_calls("t-first")
    scheduler = sched.start_scheduler(url, "0 3 * * *", job_name="t-first")
    try:
        job = scheduler.get_job("t-first")
        assert job.next_run_time.hour == 3 and job.next_run_time.minute == 0
        assert job.next_run_time > datetime.now(UTC)  # so nothing is due now
        assert calls == []
    finally:
        scheduler.shutdown()
    engine = open_catalogue(url)
    nxt = sched.next_run(engine, "t-first")
    assert nxt is not None and nxt > datetime.now(UTC)
    with engine.connect() as c:
        state = c.execute(text("SELECT job_state FROM apscheduler_jobs")).scalar()
    assert state.startswith(b"{")  # JSON, not a pickle


def test_missed_run_is_caught_up_exactly_once_at_start(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _record_calls("t-missed")
    sched.start_scheduler(url, "0 3 * * *", job_name="t-missed").shutdown()
    # The daemon last ran three days ago; the machine was off for the nights since.
    _set_next_run(url, "t-missed", datetime.now(UTC) - timedelta(days=3))

    calls, done = _record_calls("t-missed")
    second = sched.start_scheduler(url, "0 3 * * *", job_name="t-missed")
    try:
        assert done.wait(60), "the missed run was not caught up"
        # Once the stored next run is in the future, the scheduler has handled the missed
        # nights: coalesced into the one run, or there would be more calls by now.
        _until(lambda: _stored_next_run(url, "t-missed") > datetime.now(UTC),
               "the next run to move to the future")
        second.shutdown()  # waits for running jobs
        assert len(calls) == 1  # coalesced: three missed nights, one run
    finally:
        if second.running:
            second.shutdown()

    again = sched.start_scheduler(url, "0 3 * * *", job_name="t-missed")
    try:
        assert again.get_job("t-missed").next_run_time > datetime.now(UTC)  # nothing due
        assert len(calls) == 1  # a restart after the catch-up runs nothing more
    finally:
        again.shutdown()


def _stored_next_run(url: str, job: str) -> datetime:
    engine = open_catalogue(url)
    try:
        when = sched.next_run(engine, job)
    finally:
        engine.dispose()
    assert when is not None
    return when


def _until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_edited_row_never_names_the_code_that_runs(tmp_path: Path, caplog: Any) -> None:
    url = _url(tmp_path)
    calls, done = _record_calls("t-edited")
    sched.start_scheduler(url, "0 3 * * *", job_name="t-edited").shutdown()
    pwned = tmp_path / "pwned"
    past = datetime.now(UTC) - timedelta(hours=1)
    engine = open_catalogue(url)
    with engine.begin() as c:  # what anyone with write access to the catalogue could do
        raw = c.execute(text("SELECT job_state FROM apscheduler_jobs")).scalar()
        state = json.loads(raw)
        state.update(func="os:system", args=[f"touch {pwned}"], kwargs={"x": 1},
                     next_run_time=past.isoformat())
        c.execute(text("UPDATE apscheduler_jobs SET job_state = :s, next_run_time = :t"),
                  {"s": json.dumps(state).encode(), "t": past.timestamp()})
        c.execute(text("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) "
                       "VALUES ('evil', :t, :s)"),
                  {"t": past.timestamp(), "s": json.dumps({**state, "id": "evil"}).encode()})
    engine.dispose()
    with caplog.at_level("WARNING", logger="daemon.scheduler"):
        scheduler = sched.start_scheduler(url, "0 3 * * *", job_name="t-edited")
        try:
            assert done.wait(60), "the job did not run on its schedule"
            assert scheduler.get_job("evil") is None
        finally:
            scheduler.shutdown()
    assert len(calls) == 1 and not pwned.exists()
    assert "names code to run (func='os:system'" in caplog.text
    assert "'evil' ignored and deleted" in caplog.text
    engine = open_catalogue(url)
    with engine.connect() as c:
        rows = c.execute(text("SELECT id, job_state FROM apscheduler_jobs")).all()
    engine.dispose()
    assert [r[0] for r in rows] == ["t-edited"]
    assert set(json.loads(rows[0][1])) == {"version", "id", "trigger", "next_run_time"}


class _Payload:
    """What APScheduler's own (pickling) job store would run on load: a pickle whose
    __reduce__ calls os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (self.command,))


def test_a_pickle_written_into_the_job_row_is_never_unpickled(tmp_path: Path,
                                                             caplog: Any) -> None:
    import pickle

    url = _url(tmp_path)
    _record_calls("t-pickled")
    sched.start_scheduler(url, "0 3 * * *", job_name="t-pickled").shutdown()
    pwned = tmp_path / "pwned"
    engine = open_catalogue(url)
    with engine.begin() as c:
        c.execute(text("UPDATE apscheduler_jobs SET job_state = :s"),
                  {"s": pickle.dumps(_Payload(f"touch {pwned}"))})
    engine.dispose()
    with caplog.at_level("WARNING", logger="daemon.scheduler"):
        scheduler = sched.start_scheduler(url, "0 3 * * *", job_name="t-pickled")
        try:  # the row is read while the scheduler starts: by now it was looked at
            assert scheduler.get_job("t-pickled").next_run_time > datetime.now(UTC)
        finally:
            scheduler.shutdown()
    assert "'t-pickled' ignored and deleted" in caplog.text
    assert not pwned.exists()
    engine = open_catalogue(url)
    with engine.connect() as c:
        (raw,) = c.execute(text("SELECT job_state FROM apscheduler_jobs")).scalars()
    engine.dispose()
    assert set(json.loads(raw)) == {"version", "id", "trigger", "next_run_time"}


def test_changed_schedule_is_applied(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _record_calls("t-change")
    sched.start_scheduler(url, "0 3 * * *", job_name="t-change").shutdown()
    scheduler = sched.start_scheduler(url, "30 4 * * *", job_name="t-change")
    try:
        job = scheduler.get_job("t-change")
        assert (job.next_run_time.hour, job.next_run_time.minute) == (4, 30)
    finally:
        scheduler.shutdown()


def test_next_run_is_none_before_any_daemon_ran(tmp_path: Path) -> None:
    engine = open_catalogue(_url(tmp_path))
    assert sched.next_run(engine) is None


def test_crontab_weekday_numbers_mean_what_cron_means() -> None:
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    for expr, weekday in (("0 3 * * 0", 6), ("0 3 * * 7", 6), ("0 3 * * 1", 0),
                          ("0 3 * * sat", 5), ("0 3 * * 5-7", 4)):
        fire = sched.cron_trigger(expr).get_next_fire_time(None, monday)
        assert fire is not None and fire.weekday() == weekday, expr
    when = sched.cron_trigger("*/2 * * * 1-5").get_next_fire_time(None, monday)
    assert when is not None and when.minute % 2 == 0


def test_bad_cron_lines_are_refused() -> None:
    import pytest

    for expr in ("99 * * * *", "0 3 * *", "0 3 * * 9"):
        with pytest.raises(ValueError):
            sched.cron_trigger(expr)
