"""`genred status | retrain | models | config` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tests.daemon.daemon_helpers import Library
from tests.storage.modelkit import tiny_bundle

pytestmark = pytest.mark.slow


@pytest.fixture
def library(tmp_path: Path) -> Library:
    lib = Library.create(tmp_path)
    tiny_bundle(lib.store / "tiny-v2", version="tiny-v2", seed=1)
    return lib


def test_config_show_reports_the_effective_values_and_their_file(library: Library) -> None:
    config = library.root / "genred.toml"
    config.write_text('watch = ["/srv/music"]\nsettle_seconds = 3\n[retrain]\nepochs = 2\n'
                      '[aliases]\n"Nu Jazz" = "Jazz"\n'
                      '[genre_tree]\n"Liquid Funk" = "Drum & Bass"\n')
    library.env["GENRED_SETTLE_SECONDS"] = "7"
    result = library.genred("--config", str(config), "config", "show", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"] == str(config)
    assert data["watch"] == ["/srv/music"] and data["settle_seconds"] == 7.0
    assert data["retrain"]["epochs"] == 2
    # Each setting once, with the value in use: no raw "" next to a resolved copy.
    assert data["db"] == f"sqlite:///{library.db}" and "db_url" not in data
    assert data["model_store"] == str(library.store) and "model_store_path" not in data
    assert data["model"] is None  # not pinned
    assert data["aliases"]["nu jazz"] == "Jazz" and data["aliases"]["hip hop"] == "Rap"
    assert {k: data["origins"][k] for k in ("db", "watch", "settle_seconds", "workers",
                                           "retrain.epochs", "aliases.nu jazz",
                                           "aliases.hip hop")} == {
        "db": "flag", "watch": "file", "settle_seconds": "env", "workers": "default",
        "retrain.epochs": "file", "aliases.nu jazz": "file", "aliases.hip hop": "default"}
    text = library.genred("--config", str(config), "config", "show").stdout
    assert str(config) in text and "[retrain]" in text
    assert '"Liquid Funk" = "Drum & Bass"  # config file' in text
    assert '"House" = "Electronic"\n' in text  # the built-in tree
    assert data["genre_tree"]["Liquid Funk"] == "Drum & Bass"
    assert "settle_seconds = 7.0  # environment GENRED_SETTLE_SECONDS" in text
    assert "epochs = 2  # config file" in text and "rescan_hours = 6.0  # default" in text
    assert f'db = "sqlite:///{library.db}"  # command line' in text
    assert "the active model (tiny-v1)" in text
    assert '"nu jazz" = "Jazz"  # config file' in text and '"hip hop" = "Rap"\n' in text
    assert text.count("db =") == 1 and 'cache = ""' not in text


def test_bad_config_key_fails_naming_it(library: Library) -> None:
    config = library.root / "bad.toml"
    config.write_text("settle_seconds = -4\n")
    result = library.genred("--config", str(config), "status")
    assert result.returncode == 2 and "settle_seconds" in result.stderr


def test_status_without_a_daemon(library: Library) -> None:
    result = library.genred("status")
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout and "tiny-v1" in result.stdout
    data = json.loads(library.genred("status", "--format", "json").stdout)
    assert data["daemon"]["running"] is False and data["queue"] == 0
    assert data["last_retrain"] is None and data["next_retrain"] is None


def test_config_show_without_a_file_says_where_it_looked(library: Library) -> None:
    text = library.genred("config", "show").stdout
    looked = Path(library.env["XDG_CONFIG_HOME"]) / "genred" / "config.toml"
    assert text.splitlines()[1] == (f"# (no config file: looked for {looked} and "
                                    "/etc/genred/config.toml; --config FILE or GENRED_CONFIG "
                                    "names another)")


def test_the_starter_is_named_in_status_and_found_by_query_model_starter(
        library: Library) -> None:
    from classifier.bundle import read_meta
    from classifier.store import STARTER_DIR

    assert library.genred("models", "activate", "starter").returncode == 0
    line = next(x for x in library.genred("status").stdout.splitlines()
                if x.startswith("active model"))
    starter = read_meta(STARTER_DIR).version
    assert line.endswith(f"{starter} (the bundled starter)")
    make_track(library.music / "s.wav", "Drone", 6.0, seed=5)
    assert library.genred("scan", str(library.music)).returncode == 0
    rows = json.loads(library.genred("query", "--model", "starter", "--format", "json").stdout)
    assert [r["model"] for r in rows] == [starter]
    assert json.loads(library.genred("query", "--model", "tiny-v1", "--format",
                                     "json").stdout) == []


def test_models_list_show_activate_and_rollback(library: Library) -> None:
    listing = json.loads(library.genred("models", "list", "--format", "json").stdout)
    active = {m["version"]: m["active"] for m in listing if not m["bundled"]}
    assert active == {"tiny-v1": True, "tiny-v2": False}
    assert not any(m["active"] for m in listing if m["bundled"])  # the starter, if shipped
    table = library.genred("models", "list").stdout
    assert "* tiny-v1" in table

    result = library.genred("models", "activate", "tiny-v2")
    assert result.returncode == 0, result.stderr
    assert (library.store / "ACTIVE").read_text().strip() == "tiny-v2"
    assert json.loads(library.genred("status", "--format", "json").stdout)[
        "active_model"]["version"] == "tiny-v2"
    shown = json.loads(library.genred("models", "show", "tiny-v2", "--format", "json").stdout)
    assert shown["version"] == "tiny-v2" and shown["active"] and len(shown["labels"]) == 4

    assert library.genred("models", "activate", "tiny-v1").returncode == 0  # rollback
    assert (library.store / "ACTIVE").read_text().strip() == "tiny-v1"
    missing = library.genred("models", "activate", "no-such-version")
    assert missing.returncode == 1 and "no-such-version" in missing.stderr


def test_switching_back_unqueues_what_the_model_already_classified(library: Library) -> None:
    import os

    from tests.audiogen import make_track

    songs = [make_track(library.music / f"s{i}.wav", style, 8.0, seed=i)
             for i, style in enumerate(["Drone", "Pulse", "Chirp"])]
    assert library.genred("scan", "--clips", "1", str(library.music)).returncode == 0

    switched = library.genred("models", "activate", "tiny-v2")
    assert switched.returncode == 0, switched.stderr
    assert "3 track(s) queued" in switched.stdout
    reclassified = library.genred("scan", "--clips", "1", str(songs[0]))  # tiny-v2 gets one
    assert reclassified.returncode == 0, reclassified.stderr
    stat = songs[2].stat()
    os.utime(songs[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # edited meanwhile

    back = library.genred("models", "activate", "tiny-v1")
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip().endswith(
        "1 track(s) queued for reclassification; "
        "1 queued track(s) it had already classified taken off the queue")

    def state(path: Path) -> tuple[str | None, str]:
        current = [p[0] for p in library.predictions(path) if p[2]]
        return library.status_of(path), current[0]

    assert [state(s) for s in songs] == [
        ("pending", "tiny-v2"),  # tiny-v2's answer: tiny-v1 must redo it
        ("ok", "tiny-v1"),  # tiny-v1 had answered it; the file is the same: off the queue
        ("pending", "tiny-v1"),  # same model, but the file changed since: still queued
    ]
    assert json.loads(library.genred("status", "--format", "json").stdout)["queue"] == 2
    rescan = library.genred("scan", "--clips", "1", str(library.music))
    assert rescan.stdout.strip().endswith("2 classified, 1 unchanged, 0 errors"), rescan.stdout


def test_retrain_now_without_new_labels_is_skipped_and_recorded(library: Library) -> None:
    plan = library.genred("retrain")
    assert plan.returncode == 0, plan.stderr
    # what a run now would do, and why, before it is run
    assert "a run now would skip: 0 new label(s) since the last training run, 1 needed" \
        in plan.stdout
    assert "not scheduled: no daemon is running" in plan.stdout
    result = library.genred("retrain", "--now")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped: 0 new label(s)")
    data = json.loads(library.genred("status", "--format", "json").stdout)
    assert data["last_retrain"]["decision"] == "skipped"
    assert data["last_retrain"]["trigger"] == "cli"


def test_run_with_a_broken_model_fails_at_start_with_one_line(library: Library) -> None:
    import shutil

    broken = library.store / "broken"
    shutil.copytree(library.store / "tiny-v1", broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    (library.store / "ACTIVE").write_text("broken\n")
    result = library.genred("run", "--watch", str(library.music), timeout=60)
    assert result.returncode == 1
    assert "cannot use the model" in result.stderr and "Traceback" not in result.stderr


def test_run_without_folders_says_what_to_do(library: Library) -> None:
    result = library.genred("run", timeout=60)
    assert result.returncode == 1 and "--watch PATH" in result.stderr
    missing = library.genred("run", "--watch", str(library.root / "nope"), timeout=60)
    assert missing.returncode == 2  # the one rule for a path that does not exist
    assert missing.stderr == f"genred: no such file or folder: {library.root / 'nope'}\n"


def test_run_with_an_impossible_schedule_names_the_key(library: Library) -> None:
    result = library.genred("run", "--watch", str(library.music), "--retrain-schedule",
                            "61 3 * * *", timeout=60)
    assert result.returncode == 2 and "retrain.schedule" in result.stderr


def test_a_stale_pid_of_another_program_does_not_count_as_running(library: Library) -> None:
    import socket
    import subprocess

    from daemon.status import HOST_KEY, PID_KEY
    from storage.catalogue import set_state
    from storage.db import open_catalogue

    other = subprocess.Popen(["sleep", "60"])  # the recorded pid, reused by another program
    try:
        engine = open_catalogue(f"sqlite:///{library.db}")
        set_state(engine, PID_KEY, str(other.pid))
        set_state(engine, HOST_KEY, socket.gethostname())
        engine.dispose()
        data = json.loads(library.genred("status", "--format", "json").stdout)
        assert data["daemon"]["running"] is False
    finally:
        other.kill()
        other.wait()


def test_run_refuses_while_another_process_holds_the_catalogue(library: Library) -> None:
    import fcntl

    with (library.root / "catalogue.db.daemon-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a daemon starting at this moment
        result = library.genred("run", "--watch", str(library.music), timeout=60)
    assert result.returncode == 1 and "another genred daemon" in result.stderr


def test_retrain_now_with_a_missing_pinned_model_fails_cleanly(library: Library) -> None:
    library.env["GENRED_MODEL"] = "no-such-model"
    result = library.genred("retrain", "--now")
    assert result.returncode == 1 and result.stdout.startswith("failed: no usable base model")
    assert "Traceback" not in result.stderr


def test_retrain_now_stopped_with_sigterm_is_recorded_as_interrupted(library: Library) -> None:
    import signal
    import subprocess

    from tests.audiogen import make_track
    from tests.daemon.daemon_helpers import GENRED, wait_for

    for i, style in enumerate(["Drone", "Pulse", "Drone", "Pulse"]):
        make_track(library.music / f"{style}{i}.wav", style, 8.0, seed=i)
    assert library.genred("scan", str(library.music)).returncode == 0
    for path in library.music.iterdir():
        assert library.genred("correct", str(path), path.stem.rstrip("0123456789")).returncode == 0
    proc = subprocess.Popen([str(GENRED), "--db", str(library.db), "retrain", "--now"],
                            env=library.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        # No race with the run's end, however fast or slow the machine: the retrain child
        # is frozen (SIGSTOP) as soon as it exists, before it can have recorded a decision
        # (it has torch to import first); genred is stopped while it is frozen, and the
        # child is thawed only once genred has passed the SIGTERM on to it.
        child = wait_for(lambda: _child_of(proc.pid, "daemon.retrain_child"), 120,
                         "the retrain child to start")
        os.kill(child, signal.SIGSTOP)
        assert library.rows("SELECT decision FROM training_runs") == [("running",)]
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: _pending(child, signal.SIGTERM), 120,
                 "genred to pass the SIGTERM on to its retrain child")
        os.kill(child, signal.SIGCONT)
        _, err = proc.communicate(timeout=300)  # a hang guard, not a speed check
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    runs = library.rows("SELECT decision, reason FROM training_runs")
    assert runs == [("failed", "interrupted (the process stopped mid-run)")]
    status = library.genred("status")
    assert "last retrain  failed at" in status.stdout and "None" not in status.stdout


def _child_of(parent: int, marker: str) -> int | None:
    """The pid of a child process of ``parent`` whose command line holds ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and marker in cmdline:
            return int(entry.name)
    return None


def _pending(pid: int, signum: int) -> bool:
    """``signum`` is pending for process ``pid`` (sent while it is stopped)."""
    masks = [int(line.split()[1], 16)
             for line in Path(f"/proc/{pid}/status").read_text().splitlines()
             if line.startswith(("ShdPnd:", "SigPnd:"))]
    return any(mask >> (signum - 1) & 1 for mask in masks)
