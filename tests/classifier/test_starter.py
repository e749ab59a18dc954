"""The bundled starter model on real recordings from ../shared/corpus (skipped without it)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf

from classifier import audio
from classifier.predict import Classifier
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
    15 s (looped to fill the clip as every short track is): they must not turn Classical."""
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
