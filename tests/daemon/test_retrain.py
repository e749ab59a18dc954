"""The retrain job on a real catalogue with real (tiny) models and real fine-tuning.

The library: short synthetic songs of four audibly different styles, scanned by the real
worker; the user labels the "Noise" songs with a genre the base model does not know
("Polka"). The base model has random weights, so a fine-tuned one beats it; a worse
candidate is injected through the job's trainer seam, while the evaluation and the
decision stay the job's own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from classifier.store import ModelStore
from daemon.config import Config, RetrainConfig
from daemon.retrain import (
    FAILED,
    PROMOTED,
    REJECTED,
    SKIPPED,
    Label,
    retrain,
    split_holdout,
)
from storage.catalogue import count_tracks, get_track, pending_paths
from storage.corrections import add_label
from storage.db import open_catalogue
from storage.schema import ERROR, PENDING, ModelVersion, Prediction, Track, TrainingRun
from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

# Cross-validation trains up to four candidates per run: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

GENRE_OF_STYLE = {"Drone": "Drone", "Pulse": "Pulse", "Chirp": "Chirp", "Noise": "Polka"}
SONGS_PER_STYLE = 6


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retrain")
    music = root / "music"
    for k, style in enumerate(GENRE_OF_STYLE):
        for i in range(SONGS_PER_STYLE + 1):  # +1: an unlabelled song per style
            make_track(music / style / f"{style}{i}.wav", style, 8.0, seed=10 * k + i)
    store = root / "models"
    tiny_bundle(store / "tiny-v1", version="tiny-v1")
    (store / "ACTIVE").write_text("tiny-v1\n")
    return {"root": root, "music": music, "store": store}


def _config(ws: dict[str, Path], db: Path) -> Config:
    return Config(db=f"sqlite:///{db}", model_store=str(ws["store"]),
                  cache=str(ws["root"] / "cache"), clips_per_track=1, workers=1,
                  retrain=RetrainConfig(epochs=4, min_new_labels=4))


def _scan(engine: Engine, cfg: Config, music: Path) -> None:
    from classifier.predict import Classifier
    from daemon.worker import Worker

    store = ModelStore(cfg.model_store_path)
    with Worker(engine, Classifier.load(None, store, clips_per_track=1), cfg) as worker:
        worker.scan([music])


def _label_all(engine: Engine, music: Path) -> None:
    for style, genre in GENRE_OF_STYLE.items():
        for i in range(SONGS_PER_STYLE):
            add_label(engine, music / style / f"{style}{i}.wav", genre)


def _runs(engine: Engine) -> list[TrainingRun]:
    with Session(engine) as s:
        return list(s.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def test_holdout_is_deterministic_and_covers_each_genre() -> None:
    labels = [Label(f"/m/{g}{i}.mp3", g, i, f"fp-{g}-{i}") for g in "AB" for i in range(7)]
    labels.append(Label("/m/solo.mp3", "C", 99, "fp-solo"))
    train, held = split_holdout(labels)
    assert {x.path for x in split_holdout(list(reversed(labels)))[1]} == {x.path for x in held}
    assert {x.genre for x in held} == {"A", "B"}  # the lone "C" song is trained on
    assert not {x.path for x in train} & {x.path for x in held}
    moved = [Label("/elsewhere" + x.path, x.genre, x.correction_id, x.fingerprint)
             for x in labels]
    assert {x.fingerprint for x in split_holdout(moved)[1]} == {x.fingerprint for x in held}


def test_promotes_a_better_model_that_knows_the_new_genre_then_rejects_a_worse_one(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    ws = dict(workspace)
    store_copy = tmp_path / "models"
    shutil.copytree(ws["store"], store_copy)
    ws["store"] = store_copy
    cfg = _config(ws, tmp_path / "catalogue.db")
    engine = open_catalogue(cfg.db_url)
    _scan(engine, cfg, ws["music"])

    skipped = retrain(engine, cfg, trigger="schedule")
    assert skipped.decision == SKIPPED and "0 new label" in skipped.reason

    _label_all(engine, ws["music"])
    outcome = retrain(engine, cfg, trigger="schedule")
    assert outcome.decision == PROMOTED, outcome.reason
    assert outcome.new_accuracy is not None and outcome.old_accuracy is not None
    assert outcome.new_accuracy >= outcome.old_accuracy
    assert outcome.metrics["n_holdout"] >= 4
    # The random base model is sure of nothing: no anchors, and the record says so.
    assert "anchor check skipped: no anchor tracks" in outcome.reason
    assert outcome.anchor_check["status"] == "skipped" and outcome.anchor_agreement is None
    store = ModelStore(cfg.model_store_path)
    assert store.active_version() == outcome.new_model
    from classifier.predict import Classifier

    new = Classifier.load(outcome.new_model, store, clips_per_track=1)
    assert "Polka" in new.labels and set(new.labels) >= {"Drone", "Pulse", "Chirp", "Noise"}
    unlabelled_noise = ws["music"] / "Noise" / f"Noise{SONGS_PER_STYLE}.wav"
    assert new.classify(unlabelled_noise).genre == "Polka"
    # Uncorrected tracks predicted by the old model go back to the queue; labelled ones not.
    queued = set(pending_paths(engine))
    assert len(queued) == 4 and all(Path(p).stem.endswith(str(SONGS_PER_STYLE)) for p in queued)
    assert outcome.requeued == 4
    with Session(engine) as s:
        active = s.scalars(select(ModelVersion).where(ModelVersion.active)).all()
    assert [m.version for m in active] == [outcome.new_model]

    # A worse candidate (random weights) must be evaluated and rejected.
    for i in range(2):
        add_label(engine, ws["music"] / "Drone" / f"Drone{i}.wav", "Ambient")
        add_label(engine, ws["music"] / "Pulse" / f"Pulse{i}.wav", "Techno")

    def worse(base: Path, data: object, out_dir: Path) -> Path:
        return tiny_bundle(out_dir, version="worse", seed=123)

    rejected = retrain(engine, cfg, trigger="cli", trainer=worse)
    assert rejected.decision == REJECTED, rejected.reason
    assert rejected.new_accuracy is not None and rejected.old_accuracy is not None
    assert rejected.new_accuracy < rejected.old_accuracy
    assert store.active_version() == outcome.new_model
    assert not (store_copy / "worse").exists()

    runs = _runs(engine)
    assert [r.decision for r in runs] == [SKIPPED, PROMOTED, REJECTED]
    assert runs[1].old_accuracy is not None and runs[1].new_model == outcome.new_model
    assert runs[1].metrics["anchor_check"]["status"] == "skipped"
    assert runs[1].reason and "anchor check skipped" in runs[1].reason
    assert runs[2].reason and "less accurate" in runs[2].reason
    assert runs[2].last_correction_id and runs[2].last_correction_id > (
        runs[1].last_correction_id or 0)
    engine.dispose()


def test_a_failing_trainer_is_recorded_not_raised(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    cfg = _config(workspace, tmp_path / "catalogue.db")
    engine = open_catalogue(cfg.db_url)
    _scan(engine, cfg, workspace["music"])
    _label_all(engine, workspace["music"])

    def broken(base: Path, data: object, out_dir: Path) -> Path:
        raise RuntimeError("disk full")

    outcome = retrain(engine, cfg, trainer=broken)
    assert outcome.decision == FAILED and "disk full" in outcome.reason
    assert _runs(engine)[-1].decision == FAILED
    assert ModelStore(cfg.model_store_path).active_version() == "tiny-v1"
    # A failed run does not use up the labels: the next run still sees them as new.
    again = retrain(engine, cfg, trainer=broken)
    assert again.n_new_labels == outcome.n_new_labels
    assert count_tracks(engine, PENDING) == 0
    assert get_track(engine, workspace["music"] / "Drone" / "Drone0.wav") is not None
    engine.dispose()


def test_a_sub_genre_trains_as_its_parent_until_it_has_its_own_songs(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    from dataclasses import replace

    from daemon.retrain import TrainingSet

    cfg = replace(_config(workspace, tmp_path / "catalogue.db"),
                  genre_tree={"Deep Pulse": "Pulse"})
    engine = open_catalogue(cfg.db_url)
    _scan(engine, cfg, workspace["music"])
    _label_all(engine, workspace["music"])
    seen: list[TrainingSet] = []

    def capture(base: Path, data: TrainingSet, out_dir: Path) -> Path:
        seen.append(data)
        raise RuntimeError("captured")

    def genres_trained() -> dict[str, str]:
        seen.clear()
        retrain(engine, cfg, trainer=capture)  # type: ignore[arg-type]
        pairs = [*seen[0].labelled, *seen[0].holdout]
        return {Path(p).name: g for p, g in pairs if Path(p).parent.name == "Pulse"}

    deep = [workspace["music"] / "Pulse" / f"Pulse{i}.wav" for i in range(3)]
    for path in deep[:2]:
        add_label(engine, path, "Deep Pulse")
    trained = genres_trained()
    assert set(trained.values()) == {"Pulse"}, trained  # 2 songs: trained as the parent
    assert (_runs(engine)[-1].metrics or {}).get("as_parent") == {"Deep Pulse": "Pulse"}
    add_label(engine, deep[2], "Deep Pulse")
    trained = genres_trained()
    assert {trained[p.name] for p in deep} == {"Deep Pulse"}  # 3 songs: a genre of its own
    assert (_runs(engine)[-1].metrics or {}).get("as_parent") is None
    engine.dispose()


def test_the_base_models_own_training_collection_is_found_through_its_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import daemon.retrain_data
    from daemon.retrain import original_training_data

    collection = tmp_path / "collection"
    for genre in ("Jazz", "Rock"):
        for i in range(3):
            (collection / genre).mkdir(parents=True, exist_ok=True)
            (collection / genre / f"{i}.mp3").write_bytes(b"x")
    store = tmp_path / "models"
    for version, parent, training in (
        ("first", None, {"data_dir": str(collection)}),
        ("second", "first", {"data": "labelled pairs"}),  # a nightly fine-tune of "first"
    ):
        bundle = tiny_bundle(store / version, version=version)
        meta = json.loads((bundle / "model.json").read_text())
        meta.update(parent=parent, training=training)
        (bundle / "model.json").write_text(json.dumps(meta))
    monkeypatch.setattr(daemon.retrain_data, "ORIGINAL_SONGS_PER_GENRE", 2)
    pairs = original_training_data(store, store / "second")
    assert sorted(g for _, g in pairs) == ["Jazz", "Jazz", "Rock", "Rock"]
    assert all(Path(p).parent.name == g for p, g in pairs)
    assert pairs == original_training_data(store, store / "second")  # same songs each night
    shutil.rmtree(collection)
    assert original_training_data(store, store / "second") == []


def test_anchor_candidates_are_confident_uncorrected_library_songs(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    from daemon.retrain import anchor_candidates

    music = tmp_path / "music"
    shutil.copytree(workspace["music"] / "Drone", music / "Drone")
    cfg = _config(workspace, tmp_path / "anchors.db")
    engine = open_catalogue(cfg.db_url)
    _scan(engine, cfg, music)
    songs = sorted(str(p) for p in (music / "Drone").iterdir())
    with Session(engine) as s, s.begin():  # the model was sure of all but the last song
        for prediction in s.scalars(select(Prediction)):
            prediction.genre = "Jazz"
            prediction.confidence = 0.5 if prediction.track.path == songs[-1] else 0.9
    add_label(engine, songs[0], "Drone")  # corrected: a label, not an anchor
    with Session(engine) as s, s.begin():  # queued again after a model switch: still one
        s.execute(update(Track).where(Track.path == songs[3]).values(status=PENDING))
        s.execute(update(Track).where(Track.path == songs[4]).values(status=ERROR))
    anchors = anchor_candidates(engine, {"Jazz"}, exclude={songs[2]})
    assert {a.path for a in anchors} == set(songs[1:-1]) - {songs[2], songs[4]}
    assert {a.genre for a in anchors} == {"Jazz"} and all(a.fingerprint for a in anchors)
    assert anchors == anchor_candidates(engine, {"Jazz"}, exclude={songs[2]})  # every night
    assert anchor_candidates(engine, {"Rock"}, exclude=set()) == []
    engine.dispose()
