"""Stored track embeddings in the worker: a backbone model's answer without decoding.

A backbone model (``--arch backbone``) judges a track by one embedding: the frozen
network's features of its K windows, averaged (classifier/head.py). The worker keeps
every embedding it computes in the sidecar store of classifier/embeddings.py, under the
config's cache directory and keyed by the audio fingerprint the catalogue records per
track, the very store ``genred train`` and the retrain job read. Before decoding a
track it looks there: a track whose file still has the size and mtime catalogued with
its fingerprint, and whose embedding is stored for this backbone, front end and window
count, is judged by the head alone. So reclassifying a library after a new head is
promoted decodes nothing that was embedded before, and a retrain reads the embeddings
of every track a scan or the daemon has classified.

Only SQL-free calls here: the catalogue is read through storage.catalogue.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from classifier.audio import AudioInfo
from classifier.embeddings import EmbeddingStore
from classifier.predict import Classifier
from storage import catalogue


class StoredEmbeddings:
    """The embedding store of ``classifier`` (a backbone model) under ``cache``."""

    def __init__(self, classifier: Classifier, cache: Path) -> None:
        self.store = EmbeddingStore(Path(cache).expanduser(), classifier.embedding_key())

    def look_up(self, engine: Engine, path: str, size: int, mtime: float
                ) -> tuple[str, AudioInfo, np.ndarray] | None:
        """(fingerprint, info, embedding) of the catalogued track at ``path`` when its
        file's current ``size`` and ``mtime`` are the ones catalogued with its fingerprint
        and its embedding is stored; else None (the track is decoded)."""
        track = catalogue.get_track(engine, path)
        if (track is None or not track.fingerprint or track.size != size
                or track.mtime != mtime or track.duration is None):
            return None
        emb = self.store.get(track.fingerprint)
        if emb is None:
            return None
        # what the Prediction needs of the audio: its duration and the format shown
        info = AudioInfo(track.duration, track.format or "", "", 0, 0)
        return track.fingerprint, info, emb

    def keep(self, fingerprint: str | None, emb: np.ndarray) -> None:
        if fingerprint:
            self.store.put(fingerprint, emb)
