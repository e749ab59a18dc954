"""Track embeddings of the pretrained backbone, stored so nothing is decoded twice.

``EmbeddingStore`` is a sidecar directory of float16 .npy files, one per (audio key,
backbone, front end, windows), in the style of featurecache.py: classifier/ stays free of
databases, a retrain reads the embeddings of every song it has seen before without
decoding, and reclassifying a library after a new head is promoted is a matrix product.
The key is the audio fingerprint (``audio.fingerprint``: the audio stream's first packets,
what the catalogue stores per track), not the file's bytes: a tag edit — genred's own tag
writing included — or a move keeps a song's embedding.

``embed_songs`` turns songs into embeddings: stored ones are read, the rest are decoded
and turned into log-mels by the feature extractor (worker processes) and run through the
backbone here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier import audio
from classifier.dataset import Song
from classifier.extract import Extractor
from classifier.features import FeatureParams
from classifier.musicnn_spec import EMBEDDING_DIM

log = logging.getLogger(__name__)

STORE_SUBDIR = "embeddings"
BACKBONE_VERSION = "msd_musicnn-musicnn0.1.0"  # change when the converted weights change


def store_key(backbone: str, params: FeatureParams, windows: int) -> str:
    text = json.dumps({"backbone": backbone, "version": BACKBONE_VERSION,
                       "params": params.as_dict(), "windows": windows}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class EmbeddingStore:
    """``root`` None: nothing stored (everything is a miss)."""

    root: Path | None
    key: str
    hits: int = 0
    misses: int = 0

    def _file(self, digest: str) -> Path:
        assert self.root is not None
        return self.root / STORE_SUBDIR / self.key / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        if self.root is None:
            self.misses += 1
            return None
        try:
            emb = np.load(self._file(digest), allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        if emb.shape != (EMBEDDING_DIM,):
            self.misses += 1
            return None
        self.hits += 1
        return emb.astype(np.float32)

    def put(self, digest: str, emb: np.ndarray) -> None:
        """Atomic (temp file + rename); a failure to store is logged, not raised."""
        if self.root is None:
            return
        path = self._file(digest)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                np.save(fh, np.asarray(emb, dtype=np.float16), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot store an embedding in %s: %s", path.parent, e)
            tmp.unlink(missing_ok=True)


@dataclass
class Embedded:
    songs: list[Song]  # the readable ones, in order
    embeddings: np.ndarray  # (n, EMBEDDING_DIM) float32
    decoded: int  # songs that had to be decoded (not in the store)
    skipped: list[dict[str, str]]


def embed_songs(songs: list[Song], params: FeatureParams, windows: int, backbone: str,
                cache_dir: str | Path | None, progress: bool = False,
                workers: int | None = None) -> Embedded:
    """Each readable song's track embedding (the backbone's mid-end features averaged
    over the patches of ``windows`` windows spread over the track)."""
    from classifier.musicnn_ort import embed_windows

    root = Path(cache_dir).expanduser() if cache_dir else None
    store = EmbeddingStore(root, store_key(backbone, params, windows))
    found: dict[int, np.ndarray] = {}
    digests: dict[int, str] = {}
    todo: list[int] = []
    skipped: list[dict[str, str]] = []
    for i, song in enumerate(songs):
        try:
            digests[i] = audio.fingerprint(song.path)
        except audio.UnreadableAudio as e:
            skipped.append({"path": str(song.path), "error": e.reason})
            continue
        emb = store.get(digests[i])
        if emb is None:
            todo.append(i)
        else:
            found[i] = emb
    # log-mels are not cached next to the embeddings: once embedded, a song's windows are
    # never needed again, and they are 100x bigger
    ex = Extractor(params, None, progress, workers)
    feats = ex.run([(songs[i], windows, None) for i in todo], "backbone: decoding")
    for i, f in zip(todo, feats, strict=True):
        if f is None:
            continue
        emb = embed_windows(f, backbone)
        store.put(digests[i], emb)
        # at the store's precision: a cold store and a warm one train the same head
        found[i] = emb.astype(np.float16).astype(np.float32)
    kept = sorted(found)
    matrix = (np.stack([found[i] for i in kept]).astype(np.float32) if kept
              else np.zeros((0, EMBEDDING_DIM), np.float32))
    return Embedded([songs[i] for i in kept], matrix, len(todo), skipped + ex.skipped)
