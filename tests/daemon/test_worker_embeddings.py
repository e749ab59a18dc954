"""A backbone model in the worker: every embedding it computes is stored (keyed by the
audio fingerprint the catalogue keeps), and after a new head is promoted the tracks
already embedded are reclassified from the store, decoding nothing.

Real files (tests/audiogen.py styles), a real backbone model trained by
classifier.training, a real SQLite catalogue and embedding store in tmp_path. Decodes are
counted as the worker counts them (``Summary.decoded``: decode results it received) and
as training counts them (``TrainResult.decoded``), the way tests/classifier/test_backbone.py
does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from classifier import training
from classifier.embeddings import EmbeddingStore
from classifier.musicnn_ort import engine_for
from classifier.predict import Classifier
from daemon.config import Config
from daemon.queue_worker import Claimant, ClaimingWorker
from daemon.worker import Worker
from storage import catalogue, requeue
from storage.db import open_catalogue
from storage.schema import ERROR, OK
from tests.audiogen import STYLES, make_track, write_audio

FORMATS = (".flac", ".ogg", ".mp3", ".wav")
PER_STYLE = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(library, first backbone model), trained with a store of its own."""
    lib = tmp_path_factory.mktemp("lib")
    for s, style in enumerate(STYLES):
        for i in range(PER_STYLE):
            make_track(lib / style / f"{style.lower()}-{i}{FORMATS[i % 4]}", style, 6.0,
                       seed=500 + 100 * s + i)
    first = tmp_path_factory.mktemp("models") / "first"
    training.train(lib, first, arch="backbone", progress=False,
                   cache_dir=tmp_path_factory.mktemp("training-cache"))
    return lib, first


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_catalogue(f"sqlite:///{tmp_path / 'catalogue.db'}")
    yield engine
    engine.dispose()


def test_a_new_head_reclassifies_embedded_tracks_without_decoding(
    models: tuple[Path, Path], engine: Engine, tmp_path: Path
) -> None:
    lib, first = models
    cfg = Config(workers=1, cache=str(tmp_path / "cache"))
    tracks = sorted(p for p in lib.rglob("*.*"))
    n = len(tracks)
    with Worker(engine, Classifier.load(first), cfg) as w:
        scanned = w.scan([lib])
    assert (scanned.classified, scanned.decoded, scanned.from_embeddings) == (n, n, 0)

    # a retrain on corrections of these tracks reads the embeddings the scan stored
    second = tmp_path / "second"
    grown = training.fine_tune(first, [(p, p.parent.name) for p in tracks], second,
                               holdout=0.25, cache_dir=cfg.cache_path, progress=False)
    assert grown.decoded == 0
    new = Classifier.load(second)
    assert new.version != Classifier.load(first).version

    # its promotion queues every track again; the worker decodes none of them
    assert requeue.requeue_for_model(engine, new.version).queued == n
    with Worker(engine, new, cfg) as w:
        again = w.process_pending()
    assert (again.classified, again.decoded, again.from_embeddings) == (n, 0, n)
    assert f"{n} from stored embeddings, not decoded" in again.line()
    for path in tracks:
        info = catalogue.get_track(engine, path)
        assert info is not None and info.status == OK and info.model == new.version
    # the stored embedding gives the answer decoding gives
    decoded = new.classify(tracks[0])
    stored = catalogue.get_track(engine, tracks[0])
    assert stored is not None and stored.genre == decoded.genre
    assert stored.confidence == pytest.approx(decoded.confidence, abs=1e-6)

    # the daemon's (and `genred worker`'s) claiming worker does the same: another head
    # over the same backbone (a second seed, on the stored embeddings) is promoted
    other = tmp_path / "other"
    assert training.train(lib, other, arch="backbone", seed=1, cache_dir=cfg.cache_path,
                          progress=False).decoded == 0
    third = Classifier.load(other)
    assert requeue.requeue_for_model(engine, third.version).queued == n
    claimant = Claimant(engine, cfg, "daemon")
    try:
        with ClaimingWorker(engine, third, cfg, claimant=claimant) as w:
            done = w.process_pending(limit=50)
    finally:
        claimant.stop()
    assert (done.classified, done.decoded, done.from_embeddings) == (n, 0, n)

    # a file that changed since it was embedded is decoded, not judged by the old audio
    make_track(tracks[1], tracks[1].parent.name, 9.0, seed=77)
    with Worker(engine, third, cfg) as w:
        rescan = w.scan([lib])
    assert (rescan.classified, rescan.decoded, rescan.unchanged) == (1, 1, n - 1)


def test_decode_processes_embed_tracks_as_the_classifier_does(
    models: tuple[Path, Path], engine: Engine, tmp_path: Path
) -> None:
    """A scan's decode processes compute the backbone's track embedding themselves (the
    backbone never runs in the worker's process) and it gives the answer the in-process
    path gives; a file that is broken, too short or silent still gets its reason."""
    _, first = models
    lib = tmp_path / "lib"
    songs = [make_track(lib / f"{i}{FORMATS[i]}", style, 9.0, seed=900 + i)
             for i, style in enumerate(STYLES)]
    short = make_track(lib / "short.ogg", "Pulse", 2.0, seed=1)
    silent = write_audio(lib / "silent.wav", np.zeros(22050 * 8, np.float32))
    broken = lib / "broken.mp3"
    broken.write_text("not music")
    cfg = Config(workers=2, cache=str(tmp_path / "cache"))
    clf = Classifier.load(first)
    engine_for.cache_clear()
    with Worker(engine, clf, cfg) as w:
        w.pool_min_files = 0
        summary = w.process([*songs, short, silent, broken])
    assert engine_for.cache_info().currsize == 0, "the backbone ran in this process"
    assert (summary.classified, summary.errors, summary.decoded) == (4, 3, 7)

    store = EmbeddingStore(cfg.cache_path, clf.embedding_key())
    for song in songs:
        here = clf.classify(song)  # decode, log-mel, backbone and head in this process
        track = catalogue.get_track(engine, song)
        assert track is not None and track.status == OK and track.fingerprint
        assert track.genre == here.genre
        assert track.confidence == pytest.approx(here.confidence, abs=1e-4)
        kept = store.get(track.fingerprint)
        assert kept is not None
        np.testing.assert_allclose(kept, clf.embedding(clf.features(song)[1]), atol=1e-4)
    reasons = {p.name: catalogue.get_track(engine, p) for p in (short, silent, broken)}
    assert all(t is not None and t.status == ERROR for t in reasons.values())
    assert reasons["short.ogg"].error == "too short to classify: 2.0 s"  # type: ignore[union-attr]
    assert reasons["silent.wav"].error == "silent"  # type: ignore[union-attr]
    assert reasons["broken.mp3"].error  # type: ignore[union-attr]
