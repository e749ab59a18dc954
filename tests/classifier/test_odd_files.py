"""Every file in ../shared/corpus/odd-files classifies or raises the documented error,
without a crash, a hang or a change to the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from classifier import audio
from classifier.audio import UnreadableAudio
from classifier.predict import Classifier
from tests.classifier.conftest import Trained

# Files that hold real audio FFmpeg decodes: these must classify, not just "not crash".
MUST_CLASSIFY = ("full.flac", "full.mp3", "full.ogg", "full.opus", "full.m4a",
                 "full.alac.m4a", "full.aiff", "full.wv", "full.ape", "full.mpc", "full.dsf",
                 "whitenoise.flac", "whitenoise.mp3", "whitenoise.opus", "mpeglayer3.wav")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_odd_file_classifies_or_gives_the_documented_error(
    odd_files: Path, synth_model: Trained
) -> None:
    clf = Classifier.load(synth_model.path)
    outcomes: dict[str, str] = {}
    for path in sorted(p for p in odd_files.iterdir() if p.is_file() and p.name != "README.md"):
        before = _sha(path)
        try:
            prediction = clf.classify(path)
        except UnreadableAudio as e:
            assert e.reason and "\n" not in str(e)
            assert e.path == str(path)
            outcomes[path.name] = f"error: {e.reason}"
        else:
            assert prediction.genre in clf.labels
            assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-4
            outcomes[path.name] = prediction.genre
        assert _sha(path) == before, f"{path.name} was modified"
    present = [n for n in MUST_CLASSIFY if n in outcomes]
    assert present, "none of the expected odd files are present"
    for name in present:
        assert not outcomes[name].startswith("error"), (name, outcomes[name])
    assert outcomes.get("no_ext_not_music", "error").startswith("error")


@pytest.mark.timeout(60)
def test_every_odd_file_fingerprints_or_gives_the_documented_error(odd_files: Path) -> None:
    for path in sorted(p for p in odd_files.iterdir() if p.is_file() and p.name != "README.md"):
        try:
            digest = audio.fingerprint(path)
        except UnreadableAudio as e:
            assert e.reason
        else:
            assert len(digest) == 64
