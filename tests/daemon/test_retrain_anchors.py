"""The retrain job's second promotion check: does the new model still give the old model's
answers on held-out anchor tracks (uncorrected library tracks the old model was sure of, in
genres no label covers)?

The library: short synthetic songs of four styles, classified by a small real base model
that knows all four (trained on other songs of the styles). The user labels only Drone and
Pulse songs, so Chirp and Noise are the genres a fine-tune can forget without any labelled
song noticing. A fine-tune that ignores the anchors (what retraining did before anchors)
is injected through the job's trainer seam; the evaluation and the decision stay the
job's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from classifier.store import ModelStore
from daemon.config import Config, RetrainConfig
from daemon.retrain import (
    HOLDOUT_BUCKETS,
    MIN_ANCHORS_TO_JUDGE,
    PROMOTED,
    REJECTED,
    Anchor,
    TrainingSet,
    fine_tune_trainer,
    judge_agreement,
    retrain,
    split_anchors,
)
from storage.corrections import add_label
from storage.db import open_catalogue
from storage.schema import ModelVersion, TrainingRun
from tests.audiogen import STYLES, make_track
from tests.storage.modelkit import tiny_bundle

# Cross-validation trains up to four candidates per run: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

GENRED = Path(sys.executable).parent / "genred"
LABELLED = {"Drone": 6, "Pulse": 6}  # songs the user corrects, per style
SONGS = {"Drone": 8, "Pulse": 8, "Chirp": 14, "Noise": 14}  # library songs per style
BASE_VERSION = "20260101T000000Z-ba5e00"


def _config(root: Path, db: Path, store: Path) -> Config:
    return Config(db=f"sqlite:///{db}", model_store=str(store), cache=str(root / "cache"),
                  clips_per_track=1, workers=1,
                  retrain=RetrainConfig(epochs=4, min_new_labels=4))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Music, a store whose active model knows the four styles, and a catalogue in which
    that model classified the music and the user labelled the Drone and Pulse songs."""
    from classifier import training
    from classifier.bundle import read_meta
    from classifier.predict import Classifier
    from daemon.worker import Worker

    root = tmp_path_factory.mktemp("anchors")
    music, collection, store = root / "music", root / "collection", root / "models"
    for k, style in enumerate(STYLES):
        for i in range(SONGS[style]):
            make_track(music / style / f"{style}{i}.wav", style, 8.0, seed=100 * k + i)
        for i in range(4):
            make_track(collection / style / f"{style}{i}.wav", style, 8.0, seed=5000 + 100 * k + i)
    tiny = tiny_bundle(root / "tiny")
    pairs = [(p, p.parent.name) for p in sorted(collection.rglob("*.wav"))]
    # No distillation from the random tiny model: the base is to be sure of its answers.
    training.fine_tune(tiny, pairs, store / BASE_VERSION, holdout=0.0, epochs=10, lr=3e-3,
                       distill=0.0, cache_dir=root / "cache", progress=False, workers=1,
                       params=read_meta(tiny).params)
    (store / "ACTIVE").write_text(BASE_VERSION + "\n")
    cfg = _config(root, root / "catalogue.db", store)
    engine = open_catalogue(cfg.db_url)
    clf = Classifier.load(None, ModelStore(store), clips_per_track=1)
    with Worker(engine, clf, cfg) as worker:
        worker.scan([music])
    for style, n in LABELLED.items():
        for i in range(n):
            add_label(engine, music / style / f"{style}{i}.wav", style)
    engine.dispose()
    return {"root": root, "music": music, "store": store, "db": root / "catalogue.db"}


def _fresh(library: dict[str, Path], tmp_path: Path) -> tuple[Config, Engine]:
    """A copy of the store and of the catalogue, so each test promotes on its own."""
    store = tmp_path / "models"
    shutil.copytree(library["store"], store)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(library["db"]) + suffix)
        if src.exists():
            shutil.copy(src, tmp_path / f"catalogue.db{suffix}")
    cfg = _config(library["root"], tmp_path / "catalogue.db", store)
    return cfg, open_catalogue(cfg.db_url)


def _genred(cfg: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """The venv's `genred` console script on this test's catalogue and model store."""
    home = cfg.model_store_path.parent / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENRED_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"),
               XDG_CACHE_HOME=str(home / ".cache"),
               GENRED_MODEL_STORE=str(cfg.model_store_path))
    return subprocess.run([str(GENRED), "--db", cfg.db_url, *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _last_run(engine: Engine) -> TrainingRun:
    with Session(engine) as s:
        run = s.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())).first()
        assert run is not None
        s.expunge(run)
        return run


def test_a_fine_tune_that_forgets_an_unlabelled_genre_is_refused_and_says_why(
    library: dict[str, Path], tmp_path: Path
) -> None:
    cfg, engine = _fresh(library, tmp_path)

    def forgetful(base: Path, data: TrainingSet, out_dir: Path) -> Path:
        """Fine-tuning on the labels alone, anchors ignored: what retraining did before."""
        from classifier import training
        from classifier.bundle import read_meta

        return training.fine_tune(base, data.labelled, out_dir, holdout=data.holdout,
                                  epochs=cfg.retrain.epochs, cache_dir=cfg.cache_path,
                                  params=read_meta(base).params, progress=False,
                                  workers=1).out_dir

    outcome = retrain(engine, cfg, trainer=forgetful)

    assert outcome.decision == REJECTED, outcome.summary()
    # The labelled songs alone would have let it through: the anchors are what refuse it.
    assert outcome.new_accuracy is not None and outcome.old_accuracy is not None
    assert outcome.new_accuracy >= outcome.old_accuracy
    assert "less accurate" not in outcome.reason
    assert "forgets genres without labels" in outcome.reason, outcome.reason
    check = outcome.anchor_check
    assert check["status"] == "failed" and check["anchors"] >= MIN_ANCHORS_TO_JUDGE
    assert set(check["per_genre"]) == {"Chirp", "Noise"}  # only genres without labels
    forgotten = [g for g, v in check["per_genre"].items() if v["agreement"] <= 0.5]
    assert forgotten and all(g in outcome.reason for g in forgotten), check["per_genre"]
    assert check["changed"] and {c["old"] for c in check["changed"]} <= {"Chirp", "Noise"}
    figures = ", ".join(f"{g} {v['agreed']}/{v['anchors']}" for g, v in check["per_genre"].items())
    assert f"anchor agreement {figures})" in outcome.summary()  # what `retrain --now` prints
    assert ModelStore(cfg.model_store_path).active_version() == BASE_VERSION
    assert outcome.new_model and not (cfg.model_store_path / outcome.new_model).exists()

    run = _last_run(engine)
    assert run.decision == REJECTED and run.reason == outcome.reason
    assert run.metrics["anchor_check"]["status"] == "failed"
    assert run.metrics["anchor_check"]["per_genre"] == check["per_genre"]
    engine.dispose()
    status = _genred(cfg, "status")
    assert status.returncode == 0, status.stderr
    assert "last retrain  rejected" in status.stdout
    assert "forgets genres without labels" in status.stdout


def test_an_anchored_fine_tune_keeps_the_unlabelled_genres_and_is_promoted(
    library: dict[str, Path], tmp_path: Path
) -> None:
    cfg, engine = _fresh(library, tmp_path)
    seen: list[TrainingSet] = []
    real = fine_tune_trainer(cfg)

    def recording(base: Path, data: TrainingSet, out_dir: Path) -> Path:
        seen.append(data)
        return real(base, data, out_dir)

    outcome = retrain(engine, cfg, trainer=recording)

    assert outcome.decision == PROMOTED, outcome.summary()
    data = seen[0]
    trained = {p for p, _ in data.labelled + data.original + data.anchors}
    held = {p for p, _ in data.held_anchors}
    assert data.anchors and len(held) >= MIN_ANCHORS_TO_JUDGE
    assert not trained & held  # a held-out anchor is never trained on
    assert {g for _, g in data.anchors + data.held_anchors} == {"Chirp", "Noise"}
    check = outcome.anchor_check
    assert check["status"] == "passed" and check["anchors"] >= MIN_ANCHORS_TO_JUDGE
    assert outcome.anchor_agreement is not None and outcome.anchor_agreement >= 0.9
    assert "agrees with the old model on" in outcome.reason
    figures = ", ".join(f"{g} {v['agreed']}/{v['anchors']}" for g, v in check["per_genre"].items())
    assert f"anchor agreement {figures})" in outcome.summary()  # what `retrain --now` prints
    assert ModelStore(cfg.model_store_path).active_version() == outcome.new_model
    assert _last_run(engine).metrics["anchor_check"]["agreement"] == outcome.anchor_agreement
    with Session(engine) as s:
        row = s.get(ModelVersion, outcome.new_model)
        assert row is not None and row.metrics["anchor_check"]["status"] == "passed"
    engine.dispose()

    shown = _genred(cfg, "models", "show", str(outcome.new_model), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    recorded = json.loads(shown.stdout)["metrics"]["anchor_check"]
    assert recorded["agreement"] == outcome.anchor_agreement
    assert set(recorded["per_genre"]) == {"Chirp", "Noise"}
    assert "changed" not in recorded  # library paths stay out of the model file
    table = _genred(cfg, "models", "show", str(outcome.new_model)).stdout
    assert f"anchor check: passed, agreement {outcome.anchor_agreement:.3f}" in table
    for genre, v in recorded["per_genre"].items():
        assert f"  {genre:<20} {v['agreed']}/{v['anchors']} anchors" in table


def test_agreement_is_judged_overall_and_per_genre_with_enough_anchors() -> None:
    passed = judge_agreement({"Jazz": [19, 20], "Rock": [9, 10]})
    assert passed.status == "passed" and passed.agreement == pytest.approx(28 / 30)
    assert "28/30" in passed.reason

    overall = judge_agreement({"Jazz": [15, 20], "Rock": [8, 10]})
    assert overall.status == "failed" and "23/30" in overall.reason

    # Overall fine, but one genre (with enough anchors to judge it) is mostly forgotten.
    one_genre = judge_agreement({"Jazz": [60, 60], "Rock": [3, 6]})
    assert one_genre.agreement is not None and one_genre.agreement > 0.9
    assert one_genre.status == "failed" and "Rock 3/6" in one_genre.reason
    assert "Jazz" not in one_genre.reason

    # Few anchors: one changed answer is no evidence; two are.
    assert judge_agreement({"Jazz": [5, 6]}).status == "passed"
    assert judge_agreement({"Jazz": [4, 6]}).status == "failed"

    # A genre with too few anchors is only counted overall.
    small = judge_agreement({"Jazz": [60, 60], "Rock": [1, 4]})
    assert small.status == "passed", small.reason

    few = judge_agreement({"Jazz": [1, 2], "Rock": [0, 1]})
    assert few.status == "skipped" and "only 3 held-out anchor" in few.reason
    none = judge_agreement({}, unsure=4)
    assert none.status == "skipped" and none.agreement is None
    assert judge_agreement({"Rock": [0, MIN_ANCHORS_TO_JUDGE]}).status == "failed"

    # The thresholds are the config's (retrain.min_anchor_agreement / min_genre_agreement).
    lenient = judge_agreement({"Jazz": [15, 20], "Rock": [8, 10]}, overall=0.75, genre=0.7)
    assert lenient.status == "passed", lenient.reason
    assert lenient.as_json()["thresholds"]["overall"] == 0.75
    strict = judge_agreement({"Jazz": [60, 60], "Rock": [5, 6]}, overall=0.9, genre=0.9)
    assert strict.status == "failed" and "each genre needs 0.90" in strict.reason


def test_held_out_anchors_follow_the_audio_and_are_capped_per_genre(tmp_path: Path) -> None:
    import daemon.retrain_data

    def track(genre: str, i: int) -> Anchor:
        path = tmp_path / genre / f"{i}.mp3"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        return Anchor(str(path), genre, f"fp-{genre}-{i}")

    candidates = sorted([track("Jazz", i) for i in range(60)] + [track("Rock", i)
                                                                 for i in range(2)],
                        key=lambda a: a.holdout_key)
    pool, held = split_anchors(candidates)
    assert not set(pool) & set(held)
    jazz = [a for a in held if a.genre == "Jazz"]
    assert len(jazz) == daemon.retrain_data.HELD_ANCHORS_PER_GENRE
    assert all(int(a.holdout_key, 16) % HOLDOUT_BUCKETS == 0 for a in jazz)
    in_bucket = [a for a in candidates if int(a.holdout_key, 16) % HOLDOUT_BUCKETS == 0]
    assert not set(in_bucket) & set(pool)  # beyond the cap: neither checked nor trained on
    assert [a.genre for a in held].count("Rock") == 1  # a small genre still gives one
    # Moved files keep their place: the choice follows the fingerprint, not the path.
    moved = [Anchor(a.path + ".moved", a.genre, a.fingerprint) for a in candidates]
    for a in moved:
        Path(a.path).write_bytes(b"x")
    assert {a.fingerprint for a in split_anchors(moved)[1]} == {a.fingerprint for a in held}
    # A held-out anchor whose file is gone is skipped, not replaced by a training one.
    Path(held[0].path).unlink()
    assert held[0] not in split_anchors(candidates)[1]
    assert held[0] not in split_anchors(candidates)[0]
