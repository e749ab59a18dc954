"""The default model end to end, with real processes: the bundled starter (a backbone
model: the pretrained MSD_musicnn and a small head) active, `genred run` classifying the
library and a file dropped into it and storing every track's embedding, then `genred
retrain --now` training a new head on corrections from those stored embeddings, judging it
and recording its decision, and `genred scan` afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.bundle import read_meta
from classifier.store import STARTER_DIR
from tests.audiogen import make_track
from tests.daemon.daemon_helpers import Daemon, Library, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_the_bundled_backbone_starter_runs_classifies_and_retrains(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    lib = Library.create(tmp_path)
    assert lib.genred("models", "activate", "starter").returncode == 0
    starter = read_meta(STARTER_DIR).version
    labelled = {"Classical": [make_track(lib.music / "calm" / f"d{i}.flac", "Drone", 8.0,
                                         seed=i) for i in range(4)],
                "Electronic": [make_track(lib.music / "beat" / f"p{i}.ogg", "Pulse", 8.0,
                                          seed=10 + i) for i in range(4)]}
    songs = [p for paths in labelled.values() for p in paths]

    daemon = Daemon(lib)
    daemons.append(daemon)
    daemon.ready()
    dropped = make_track(lib.music / "dropped.mp3", "Chirp", 8.0, seed=20)
    short = make_track(lib.music / "short.wav", "Chirp", 1.0, seed=21)
    wait_for(lambda: all(lib.status_of(p) in ("ok", "error") for p in [*songs, dropped, short]),
             300, "the starter to classify the library and the dropped files")
    assert lib.status_of(dropped) == "ok" and lib.predictions(dropped)[-1][0] == starter
    assert lib.status_of(short) == "error"  # 1 s of audio: a reason, not a genre
    assert "too short to classify" in str(lib.track(short)[3])  # type: ignore[index]
    assert daemon.terminate()[0] == 0
    stored = list((Path(lib.env["XDG_CACHE_HOME"]) / "genred" / "embeddings").rglob("*.npy"))
    assert len(stored) == len(songs) + 1  # every classified track's embedding, kept

    for genre, paths in labelled.items():
        for path in paths:
            assert lib.genred("correct", str(path), genre).returncode == 0
    done = lib.genred("retrain", "--now", timeout=1200)
    assert done.returncode == 0, done.stderr
    decision = done.stdout.split(":", 1)[0]
    assert decision in ("promoted", "rejected"), done.stdout  # judged, not failed or skipped
    (row,) = lib.rows("SELECT decision, base_model, new_accuracy FROM training_runs")
    assert row[0] == decision and row[1] == starter and row[2] is not None
    active = json.loads(lib.genred("status", "--format", "json").stdout)["active_model"]
    assert (active["version"] == starter) == (decision == "rejected")

    rescan = lib.genred("scan", str(lib.music), timeout=600)
    assert rescan.returncode == 0, rescan.stderr
    # retrain --now with no daemon reclassified the uncorrected tracks the old model had
    # answered; the scan after it gives the labelled ones the new model's prediction too,
    # from their stored embeddings: nothing is decoded again
    assert lib.status_of(dropped) == "ok"
    assert lib.predictions(dropped)[-1][0] == active["version"]
    n = len(songs) if decision == "promoted" else 0
    assert f"{n} classified, {len(songs) + 2 - n} unchanged, 0 errors" in rescan.stdout
    if n:
        assert f"({n} from stored embeddings, not decoded)" in rescan.stdout
