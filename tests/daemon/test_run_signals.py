"""`genred run` and its signals, its watchdog and its job store, with real processes:
SIGHUP re-reads the config, SIGTERM ends it within seconds whatever it is doing, the
watchdog is fed through a backlog, and an edited job row never runs code."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.audiogen import STYLES, make_track
from tests.daemon.daemon_helpers import Daemon, Library, wait_for

pytestmark = pytest.mark.slow

SECONDS = 20.0


def _config(path: Path, **values: object) -> Path:
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ended(daemon: Daemon, timeout: float = 10) -> tuple[int, float]:
    start = time.monotonic()
    code = daemon.proc.wait(timeout=timeout)
    return code, time.monotonic() - start


def test_sighup_rereads_the_watch_list_tag_settings_and_schedule(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    second = tmp_path / "more-music"
    second.mkdir()
    config = _config(tmp_path / "config.toml", watch=[str(library.music)],
                     retrain={"schedule": "0 3 * * *"})
    daemon = Daemon(library, "--config", str(config), watch=False)
    daemons.append(daemon)
    daemon.ready()
    daemon.wait_log("start scan:")
    _config(config, watch=[str(library.music), str(second)], write_tags=True,
            tag_threshold=0.0, retrain={"schedule": "30 4 * * *"})
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_message("RELOADING=1")
    daemon.wait_log("config reloaded from")
    song = make_track(second / "new-folder.flac", "Pulse", SECONDS, seed=1)
    wait_for(lambda: library.status_of(song) == "ok", 60, "a file in the newly watched folder")
    wait_for(lambda: library.rows("SELECT count(*) FROM tag_backups WHERE written != '{}'")[
        0][0], 30, "its tag, written under the reloaded tag settings")
    nxt = json.loads(library.genred("status", "--format", "json").stdout)["next_retrain"]
    when = datetime.fromisoformat(nxt).astimezone()
    assert (when.hour, when.minute) == (4, 30)
    status = json.loads(library.genred("status", "--format", "json").stdout)
    assert status["daemon"]["watch"] == [str(library.music), str(second)]

    config.write_text(f"watch = {json.dumps([str(second)])}\ntag_threshold = 5\n")  # a typo
    at = len(daemon.output())
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("config not reloaded, the running config is kept: config key "
                    "'tag_threshold'", after=at)
    other = make_track(library.music / "still-watched.flac", "Drone", SECONDS, seed=2)
    wait_for(lambda: library.status_of(other) == "ok", 60, "a file after the failed reload")
    assert daemon.terminate()[0] == 0


def test_a_storm_of_signals_mid_backlog_never_deadlocks(
    library: Library, daemons: list[Daemon]
) -> None:
    for i in range(16):
        make_track(library.music / f"s{i:02}.wav", STYLES[i % 4], SECONDS, seed=40 + i)
    daemon = Daemon(library)
    daemons.append(daemon)
    daemon.ready()
    wait_for(lambda: library.rows("SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0],
             60, "the first classified file")
    for _ in range(40):  # each lands wherever the loop is: logging, a queue, a commit
        daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("config reloaded from")
    code, _ = daemon.terminate()
    assert code == 0, daemon.output()
    statuses = {s for (s,) in library.rows("SELECT status FROM tracks")}
    assert statuses <= {"ok", "pending"}


@pytest.mark.parametrize("moment", ["starting", "locked"])
def test_sigterm_ends_the_daemon_within_seconds_at_awkward_moments(
    library: Library, daemons: list[Daemon], moment: str
) -> None:
    library.env["GENRED_BUSY_TIMEOUT_SECONDS"] = "5"
    holder = None
    if moment == "locked":  # the daemon is stuck waiting on another program's lock
        assert library.genred("status").returncode == 0  # creates the catalogue
        holder = sqlite3.connect(library.db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    try:
        daemon = Daemon(library)
        daemons.append(daemon)
        if moment == "starting":
            daemon.wait_log("watching")  # signals are handed off by now; not ready yet
        else:
            daemon.wait_log("is locked by another program")
        code, _ = daemon.terminate()
        assert code == 0, daemon.output()
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()


def test_the_watchdog_is_fed_through_a_backlog(
    library: Library, daemons: list[Daemon]
) -> None:
    n = 40
    for i in range(n):
        make_track(library.music / f"w{i:02}.wav", STYLES[i % 4], 8.0, seed=70 + i)
    # Short, but above the few seconds the loop waits while the decode pool's processes
    # start (the forkserver imports the decoding code first); systemd's unit has 120 s.
    library.env["WATCHDOG_USEC"] = "10000000"
    daemon = Daemon(library)
    daemons.append(daemon)
    daemon.ready()
    done = lambda: library.rows("SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0]  # noqa: E731
    pings = 0
    while done() < n:
        at = len(daemon.messages)
        daemon.wait_message("WATCHDOG=1", timeout=30)
        pings += sum("WATCHDOG=1" in m for m in daemon.messages[at:])
        daemon.messages.clear()
    assert pings >= 1
    assert "not pinging the watchdog" not in daemon.output()
    assert daemon.terminate()[0] == 0


def test_an_edited_job_row_never_runs_code(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    from daemon import scheduler
    from storage.db import open_catalogue

    url = f"sqlite:///{library.db}"
    open_catalogue(url).dispose()
    scheduler.start_scheduler(url, "0 3 * * *").shutdown()
    pwned = tmp_path / "pwned"
    past = datetime.now(UTC) - timedelta(days=1)
    state = json.loads(library.rows("SELECT job_state FROM apscheduler_jobs")[0][0])
    state.update(func="os:system", args=[f"touch {pwned}"], next_run_time=past.isoformat())
    with sqlite3.connect(library.db) as conn:  # plain SQL, as anyone with write access could
        conn.execute("UPDATE apscheduler_jobs SET next_run_time = ?, job_state = ?",
                     (past.timestamp(), json.dumps(state).encode()))
    daemon = Daemon(library)
    daemons.append(daemon)
    daemon.ready()
    daemon.wait_log("names code to run (func='os:system'")
    wait_for(lambda: library.rows("SELECT 1 FROM training_runs WHERE decision != 'running'"),
             60, "the retrain job, run on schedule as genred's own job")
    assert not pwned.exists()
    row = json.loads(library.rows("SELECT job_state FROM apscheduler_jobs")[0][0])
    assert "func" not in row and "args" not in row  # rewritten: schedule state only
    assert daemon.terminate()[0] == 0
    assert not pwned.exists()
