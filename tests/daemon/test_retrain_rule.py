"""The promotion rule, the waiting genres, `retrain --now` finishing its job, and the job's
child process, on a real catalogue with real (tiny) models and real fine-tuning.

The library: short synthetic songs of four audibly different styles, scanned by the real
worker. The base model has random weights, so it is sure of nothing and no anchors are
chosen: the labels alone decide.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from classifier.store import ModelStore
from daemon.config import Config, RetrainConfig
from daemon.retrain import FAILED, PROMOTED, REJECTED, SKIPPED, RetrainOutcome, retrain
from storage.corrections import add_label
from storage.db import open_catalogue
from storage.schema import TrainingRun
from tests.audiogen import STYLES, make_track
from tests.daemon.daemon_helpers import Daemon, Library, wait_for
from tests.storage.modelkit import tiny_bundle

# Real fine-tunes (cross-validation trains four models): minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rule") / "music"
    for k, style in enumerate(STYLES):
        for i in range(6):
            make_track(root / style / f"{style}{i}.wav", style, 8.0, seed=10 * k + i)
    return root


def _config(tmp_path: Path, store: Path) -> Config:
    return Config(db=f"sqlite:///{tmp_path / 'catalogue.db'}", model_store=str(store),
                  cache=str(tmp_path / "cache"), clips_per_track=1, workers=1,
                  retrain=RetrainConfig(epochs=4))


def _scanned(tmp_path: Path, music: Path) -> tuple[Config, Engine]:
    from classifier.predict import Classifier
    from daemon.worker import Worker

    store = tmp_path / "models"
    tiny_bundle(store / "tiny-v1", version="tiny-v1")
    (store / "ACTIVE").write_text("tiny-v1\n")
    cfg = _config(tmp_path, store)
    engine = open_catalogue(cfg.db_url)
    with Worker(engine, Classifier.load(None, ModelStore(store), clips_per_track=1),
                cfg) as worker:
        worker.scan([music])
    return cfg, engine


def test_random_labels_on_20_songs_do_not_replace_the_model(tmp_path: Path,
                                                           music: Path) -> None:
    # As a user meets it: 20 songs scanned, labelled from a CSV with genres that have
    # nothing to do with the audio, then `genred retrain --now`.
    library = Library.create(tmp_path)
    library.env.update(GENRED_CLIPS_PER_TRACK="1", GENRED_WORKERS="1",
                       GENRED_RETRAIN_EPOCHS="4")
    rng = random.Random(7)
    lines = []
    for song in sorted(music.rglob("*.wav"))[:20]:
        copy = library.music / song.parent.name / song.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(song, copy)
        lines.append(f"{copy},{rng.choice(STYLES)}\n")
    assert library.genred("scan", str(library.music)).returncode == 0
    csv = tmp_path / "labels.csv"
    csv.write_text("path,genre\n" + "".join(lines))
    labelled = library.genred("correct", "--from-csv", str(csv))
    assert labelled.returncode == 0, labelled.stderr
    assert library.rows("SELECT count(*) FROM corrections WHERE active") == [(20,)]

    now = library.genred("retrain", "--now", timeout=1800)
    assert now.returncode == 0, now.stderr
    # The run says why: either refusal is the rule at work (a random-label model is no
    # better than the old one by a margin 20 songs can show, and often simply worse).
    assert now.stdout.startswith("rejected: "), now.stdout
    assert ("cannot show the new model learned the labels" in now.stdout
            or "new model less accurate on 20 songs" in now.stdout), now.stdout
    assert "kept tiny-v1" in now.stdout and "on 20 song(s) neither model trained on" in now.stdout
    assert "reclassif" not in now.stdout  # nothing was promoted, nothing to redo
    listing = library.genred("models", "list").stdout
    assert [line.split()[1] for line in listing.splitlines() if line.startswith("*")] == \
        ["tiny-v1"]
    assert ModelStore(library.store).active_version() == "tiny-v1"
    (decision, metrics), = library.rows("SELECT decision, metrics FROM training_runs")
    judging = json.loads(metrics)["judging"]
    assert decision == REJECTED
    assert judging["n_songs"] == 20 and "cross-validation" in judging["judged_on"]
    assert judging["p_gain"] >= 0.05 and judging["p_above_chance"] >= 0.05
    kept = sorted(p.name for p in library.store.iterdir() if not p.name.startswith("."))
    assert kept == ["ACTIVE", "tiny-v1"]  # no candidate (fold or final) is left behind


def test_a_genre_with_two_labels_waits(tmp_path: Path, music: Path) -> None:
    library = Library.create(tmp_path)
    for i in range(2):
        shutil.copy(music / "Noise" / f"Noise{i}.wav", library.music / f"n{i}.wav")
    assert library.genred("scan", str(library.music)).returncode == 0
    for i in range(2):
        done = library.genred("correct", str(library.music / f"n{i}.wav"), "Polka",
                              "--new-genre")
        assert done.returncode == 0, done.stderr
    plan = library.genred("retrain")
    assert "Polka (2 song(s))" in plan.stdout
    assert "a run now would skip: every labelled genre is waiting for 3 songs" in plan.stdout
    now = library.genred("retrain", "--now")
    assert now.returncode == 0, now.stderr
    assert "every labelled genre is waiting for 3 songs" in now.stdout
    assert "waiting for more songs: Polka (2)" in now.stdout
    genres = library.genred("genres").stdout
    assert "waiting: 2 of 3 labelled songs" in genres
    assert library.rows("SELECT decision FROM training_runs") == [(SKIPPED,)]
    assert library.rows("SELECT count(*) FROM corrections WHERE active")[0][0] == 2


def test_enough_held_out_songs_judge_without_cross_validation_and_never_on_training_songs(
        tmp_path: Path, music: Path) -> None:
    from daemon.retrain import fine_tune_trainer, present_labels, split_holdout

    cfg, engine = _scanned(tmp_path, music)
    for style in STYLES:
        for i in range(6):
            add_label(engine, music / style / f"{style}{i}.wav", style)
    _, held = split_holdout(present_labels(engine))
    by_genre = {g: [x for x in held if x.genre == g] for g in STYLES}
    assert all(by_genre.values()), by_genre  # the hold-out covers every labelled genre
    # The base model says it was trained on one held-out song: judging it there would be
    # judging it on its own training data, so that song must not count.
    seen = next(songs[0] for songs in by_genre.values() if len(songs) >= 2)
    meta_file = cfg.model_store_path / "tiny-v1" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["training"] = {"train_fingerprints": [seen.fingerprint]}
    meta_file.write_text(json.dumps(meta))
    # exactly enough held-out songs once that one is out
    cfg = replace(cfg, retrain=replace(cfg.retrain, min_holdout_songs=len(held) - 1))
    trained: list[Path] = []
    real = fine_tune_trainer(cfg)

    def counting(base: Path, data: Any, out_dir: Path) -> Path:
        assert seen.path not in {p for p, _ in data.labelled}  # held out: never trained on
        trained.append(out_dir)
        return real(base, data, out_dir)

    outcome = retrain(engine, cfg, trainer=counting)
    assert outcome.decision in (PROMOTED, REJECTED), outcome.summary()
    judging = outcome.metrics["judging"]
    assert judging["judged_on"] == f"{len(held) - 1} held-out songs"
    assert judging["n_songs"] == outcome.n_judged == len(held) - 1
    assert len(trained) == 1  # the one candidate: no cross-validation folds
    with Session(engine) as s:
        run = s.scalars(select(TrainingRun)).one()
        assert run.metrics["judging"] == judging and run.metrics["n_holdout"] == len(held)


def _labelled_library(tmp_path: Path, music: Path) -> Library:
    """A scanned library with five of the six songs of each style labelled."""
    library = Library.create(tmp_path)
    for style in STYLES:
        shutil.copytree(music / style, library.music / style)
    library.env.update(GENRED_CLIPS_PER_TRACK="1", GENRED_WORKERS="1",
                       GENRED_RETRAIN_EPOCHS="4")
    assert library.genred("scan", str(library.music)).returncode == 0
    # the sixth song of each style stays unlabelled; one `correct` for all 20 labels
    labels = library.root / "labels.csv"
    labels.write_text("path,genre\n" + "".join(
        f"{library.music / style / f'{style}{i}.wav'},{style}\n"
        for style in STYLES for i in range(5)))
    done = library.genred("correct", "--from-csv", str(labels))
    assert done.returncode == 0, done.stderr
    assert library.rows("SELECT count(*) FROM corrections WHERE active") == [(20,)]
    return library


def test_retrain_now_with_a_daemon_running_leaves_the_tracks_to_it(
        tmp_path: Path, music: Path) -> None:
    library = _labelled_library(tmp_path, music)
    daemon = Daemon(library).ready()
    try:
        now = library.genred("retrain", "--now", timeout=1800)
        assert now.returncode == 0, now.stderr
        assert now.stdout.startswith("promoted"), now.stdout
        assert f"the running daemon (pid {daemon.proc.pid}) reclassifies them" in now.stdout
        assert "no daemon is running" not in now.stdout
        new_model = ModelStore(library.store).active_version()
        wait_for(lambda: library.rows(
            "SELECT count(*) FROM tracks t JOIN predictions p ON p.track_id = t.id "
            "AND p.current WHERE t.status = 'ok' AND p.model_version = ?", new_model
        ) == [(len(STYLES),)], 600, "the daemon reclassifying the unlabelled tracks")
        assert library.rows("SELECT count(*) FROM tracks WHERE status = 'pending'") == [(0,)]
        assert daemon.terminate(timeout=60)[0] == 0
    finally:
        daemon.cleanup()


def test_retrain_now_without_a_daemon_reclassifies_the_affected_tracks(
        tmp_path: Path, music: Path) -> None:
    library = _labelled_library(tmp_path, music)
    before = json.loads(library.genred("query", "--format", "json").stdout)
    now = library.genred("retrain", "--now", timeout=1800)
    assert now.returncode == 0, now.stderr
    assert now.stdout.startswith("promoted"), now.stdout
    assert "no daemon is running: reclassifying 4 track(s)" in now.stdout
    assert "4 track(s) reclassified" in now.stdout and "changed genre" in now.stdout
    assert library.rows("SELECT count(*) FROM tracks WHERE status = 'pending'") == [(0,)]
    after = json.loads(library.genred("query", "--format", "json").stdout)
    new_model = ModelStore(library.store).active_version()
    assert new_model != "tiny-v1"
    unlabelled = {r["path"]: r for r in after if r["corrected_genre"] is None}
    assert len(unlabelled) == 4 and {r["model"] for r in unlabelled.values()} == {new_model}
    assert [r for r in after if r["path"] in unlabelled] != [
        r for r in before if r["path"] in unlabelled]
    listing = library.genred("models", "list").stdout
    assert "ON SONGS" in listing
    # The new bundle records what it trained on: evaluating on those songs says so.
    evaluated = library.genred("evaluate", str(library.music), timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "were in the model's training data" in evaluated.stderr


def test_a_killed_retrain_child_is_a_failed_run_and_the_parent_goes_on(
        tmp_path: Path, music: Path) -> None:
    from daemon.retrain_child import child_pid, retrain_in_child

    cfg, engine = _scanned(tmp_path, music)
    for style in STYLES:
        for i in range(6):
            add_label(engine, music / style / f"{style}{i}.wav", style)
    results: list[RetrainOutcome] = []
    job = threading.Thread(target=lambda: results.append(
        retrain_in_child(engine, cfg, "schedule")))
    job.start()
    pid = wait_for(child_pid, 60, "the retrain child to start")
    os.kill(pid, signal.SIGKILL)
    job.join(120)
    assert not job.is_alive()
    (outcome,) = results
    assert outcome.decision == FAILED
    assert "killed by SIGKILL" in outcome.reason
    assert not Path(f"/proc/{pid}").exists()  # reaped: its memory is back
    assert ModelStore(cfg.model_store_path).active_version() == "tiny-v1"
    # The parent carries on: the next run works (and is not blocked by a stale lock).
    again = retrain_in_child(engine, cfg, "cli")
    assert again.decision != FAILED, again.reason
    with Session(engine) as s:
        runs = [r.decision for r in s.scalars(select(TrainingRun).order_by(TrainingRun.id))]
    assert runs == [FAILED, again.decision]


def test_the_retrain_child_sets_its_own_torch_threads_and_niceness(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """retrain.threads reaches the child's torch (3: neither the default of all cores but
    one nor the daemon's one), and the nightly run is niced. No labels: the run is
    skipped; the child's settings are what it logged."""
    threads, trigger, nicer = 3, "schedule", 10
    import dataclasses

    from daemon.retrain_child import retrain_in_child

    store = tmp_path / "models"
    tiny_bundle(store / "tiny-v1", version="tiny-v1")
    (store / "ACTIVE").write_text("tiny-v1\n")
    cfg = _config(tmp_path, store)
    cfg = dataclasses.replace(cfg, retrain=dataclasses.replace(cfg.retrain, threads=threads))
    engine = open_catalogue(cfg.db_url)
    capfd.readouterr()
    outcome = retrain_in_child(engine, cfg, trigger)
    assert outcome.decision == SKIPPED, outcome.reason
    err = capfd.readouterr().err
    line = next(x for x in err.splitlines() if "its own process" in x)
    pid = int(line.split("(pid ")[1].split(")")[0])
    assert pid != os.getpid()
    niceness = min(19, os.nice(0) + nicer)  # the kernel caps it at 19
    assert f"{threads} torch thread(s), nice {niceness}" in line, line
