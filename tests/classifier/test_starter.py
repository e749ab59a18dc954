"""The bundled starter model: a head over the pretrained MSD_musicnn backbone, trained by
tools/starter/train_starter.py on the training part of ../shared/corpus/music's
artist-disjoint split. What the bundle says of itself is checked without the corpus; its
answers on real recordings from ../shared/corpus (skipped without it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from classifier import audio
from classifier.headfit import EMBEDDINGS_FILE
from classifier.predict import Classifier, Unclassifiable
from classifier.store import STARTER_DIR
from tests.audiogen import make_track, write_audio
from tests.classifier.conftest import SHARED

MUSIC = SHARED / "corpus" / "music"
MISC = SHARED / "corpus" / "music-misc"


@pytest.fixture(scope="module")
def starter() -> Classifier:
    return Classifier.load()


def _needs(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared corpus is not next to the repo)")
    return path


def test_the_starter_is_a_calibrated_backbone_head_with_its_training_embeddings(
    starter: Classifier,
) -> None:
    assert starter.path == STARTER_DIR and starter.embeds
    meta = starter.meta
    assert meta.params.frontend == "musicnn"
    assert meta.training["split"].startswith("artist clusters")
    # held out by artist: what its metrics say is what the README reports
    assert 0.0 <= meta.metrics["ece"] <= 1.0 and meta.metrics["accuracy"] >= 0.5
    assert meta.training["temperature"] > 0
    report = json.loads((STARTER_DIR / "metrics.json").read_text())
    assert report["test"]["n_songs"] >= 100 and "per_source" in report["test"]
    # the songs it trained on travel with it, so a grown model keeps them
    genres = json.loads((STARTER_DIR / "training_genres.json").read_text())
    assert (STARTER_DIR / EMBEDDINGS_FILE).is_file()
    assert set(genres) == set(starter.labels)
    assert sum(meta.training["songs"]["train"].values()) == len(genres)


def test_the_starter_refuses_short_and_silent_audio(starter: Classifier,
                                                   tmp_path: Path) -> None:
    short = make_track(tmp_path / "short.wav", "Pulse", 3.0, seed=1)
    with pytest.raises(Unclassifiable, match=r"too short to classify: 3\.0 s"):
        starter.classify(short)
    silent = write_audio(tmp_path / "silent.flac", np.zeros(22050 * 20, np.float32))
    with pytest.raises(Unclassifiable, match="silent"):
        starter.classify(silent)


@pytest.mark.corpus
def test_starter_classifies_real_tracks_into_its_genres(starter: Classifier) -> None:
    tracks = sorted(_needs(MISC).glob("*.ogg"))
    predictions = [starter.classify(p) for p in tracks]
    assert all(p.genre in starter.labels for p in predictions)
    classical = [p for t, p in zip(tracks, predictions, strict=True)
                 if t.name.startswith("classical--")]
    assert classical and all(p.genre == "Classical" for p in classical)


@pytest.mark.corpus
def test_short_looped_audio_is_no_shortcut_to_classical(starter: Classifier,
                                                        tmp_path: Path) -> None:
    """Most 15 s clips in the training data are Classical. Cut non-Classical 30 s songs to
    15 s (looped to fill the windows as every short track is): they must not turn
    Classical."""
    with (_needs(MUSIC) / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh)
                if r["genre"] != "Classical" and "30 s" in r["source"]][::6]
    assert len(rows) >= 6
    turned = 0
    for row in rows:
        song = MUSIC / row["path"]
        short = tmp_path / f"{song.stem}.wav"
        sf.write(short, audio.read_clip(song, 0.0, clip_seconds=15.0), audio.SAMPLE_RATE)
        full, cut = starter.classify(song), starter.classify(short)
        turned += cut.genre == "Classical" and full.genre != "Classical"
    assert turned <= 1, f"{turned} of {len(rows)} songs became Classical when cut to 15 s"
