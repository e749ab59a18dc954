"""The retrain schedule: JSON job store in the catalogue, missed runs caught up once."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
        time.sleep(0.5)
        assert calls == []
        job = scheduler.get_job("t-first")
        assert job.next_run_time.hour == 3 and job.next_run_time.minute == 0
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
        assert done.wait(10), "the missed run was not caught up"
        time.sleep(1.5)
        assert len(calls) == 1  # coalesced: three missed nights, one run
        assert second.get_job("t-missed").next_run_time > datetime.now(UTC)
    finally:
        second.shutdown()

    again = sched.start_scheduler(url, "0 3 * * *", job_name="t-missed")
    try:
        time.sleep(1.0)
        assert len(calls) == 1  # a restart after the catch-up runs nothing more
    finally:
        again.shutdown()


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
