"""On-disk cache of log-mel features: plain ``.npy`` arrays (float16), never pickles.

Key = sha256 of the file's bytes + the feature parameters + which clips (a name such as
``spread3`` or ``random5-seed0``), so an edited file, other settings or other clips never
hit a stale entry, and a second training run skips decoding. Entries are written to a
temporary name and renamed, so a crash never leaves a half array. ``np.load`` is always
called with ``allow_pickle=False``.
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

from classifier.features import FeatureParams

log = logging.getLogger(__name__)

CACHE_SUBDIR = "features"


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def params_key(params: FeatureParams) -> str:
    text = json.dumps(params.as_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class FeatureCache:
    """``root`` None disables caching (everything is a miss, nothing is written)."""

    root: Path | None
    params: FeatureParams
    hits: int = 0
    misses: int = 0

    def __post_init__(self) -> None:
        if self.root is not None:
            self.root = Path(self.root).expanduser() / CACHE_SUBDIR / params_key(self.params)

    def _file(self, digest: str, clips: str) -> Path:
        assert self.root is not None
        return self.root / digest[:2] / f"{digest}-{clips}.npy"

    def get(self, digest: str, clips: str) -> np.ndarray | None:
        if self.root is None:
            self.misses += 1
            return None
        file = self._file(digest, clips)
        try:
            arr = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError) as e:
            log.warning("dropping damaged cache entry %s: %s", file, e)
            file.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return arr.astype(np.float16, copy=False)

    def put(self, digest: str, clips: str, feats: np.ndarray) -> None:
        if self.root is None:
            return
        file = self._file(digest, clips)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{secrets.token_hex(4)}.tmp")
            with tmp.open("wb") as fh:
                np.save(fh, feats.astype(np.float16), allow_pickle=False)
            os.replace(tmp, file)
        except OSError as e:
            log.warning("feature cache not written (%s): %s", file, e)
