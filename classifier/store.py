"""ModelStore: a directory of model bundles, one per version, plus the bundled starter.

Layout (root = config.model_store_path)::

    root/
      ACTIVE                    one line: the active version id (absent = the starter)
      20261125T091500Z-3fa9c1/  a bundle (model.json + model.safetensors + reports)
      ...

The bundled starter model lives inside the package (``classifier/starter``); it is always
listed and is what a fresh install uses. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.bundle import BundleError, is_bundle, new_version_id, read_meta

log = logging.getLogger(__name__)

ACTIVE_FILE = "ACTIVE"
STARTER_DIR = Path(__file__).resolve().parent / "starter"
STARTER_NAMES = ("starter", "bundled")


class ModelNotFound(Exception):
    """No bundle matches the given version id or path; the message says what was tried."""


@dataclass(frozen=True)
class BundleInfo:
    version: str
    path: Path
    labels: list[str]
    created_at: str
    parent: str | None
    metrics: dict[str, Any]
    bundled: bool  # the starter model shipped with genred

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy")
        return float(value) if isinstance(value, int | float) else None


def bundle_info(path: Path, bundled: bool = False) -> BundleInfo:
    meta = read_meta(path)
    return BundleInfo(
        version=meta.version,
        path=path,
        labels=meta.labels,
        created_at=meta.created_at,
        parent=meta.parent,
        metrics=meta.metrics,
        bundled=bundled,
    )


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def bundled(self) -> Path:
        """The starter bundle inside the package."""
        return STARTER_DIR

    def active_version(self) -> str | None:
        """The version id named in ACTIVE, or None (the starter is active)."""
        try:
            text = (self.root / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def active(self) -> Path:
        """The active bundle: the version ACTIVE names, else the bundled starter. An ACTIVE
        file naming a vanished version falls back to the starter with a warning."""
        version = self.active_version()
        if version is None:
            return self.bundled()
        try:
            return self.resolve(version)
        except ModelNotFound:
            log.warning("active model %s not found in %s; using the starter", version, self.root)
            return self.bundled()

    def activate(self, version: str) -> Path:
        """Make ``version`` (an id in this store, a bundle path, or 'starter') the active
        model; returns its path. ACTIVE holds the version id for bundles in the store and
        the absolute path for bundles elsewhere; it is replaced atomically."""
        path = self.resolve(version)
        self.root.mkdir(parents=True, exist_ok=True)
        if path == self.bundled():
            value = ""
        elif path.parent.resolve() == self.root.resolve():
            value = path.name
        else:
            value = str(path.resolve())
        tmp = self.root / f".{ACTIVE_FILE}.{secrets.token_hex(4)}"
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / ACTIVE_FILE)
        log.info("active model is now %s", value or "the bundled starter")
        return path

    def versions(self) -> list[BundleInfo]:
        """Every readable bundle in the store, oldest first, then the bundled starter."""
        found: list[BundleInfo] = []
        if self.root.is_dir():
            for child in sorted(self.root.iterdir()):
                if child.name.startswith(".") or not is_bundle(child):
                    continue
                try:
                    found.append(bundle_info(child))
                except BundleError as e:
                    log.warning("skipping unreadable bundle: %s", e)
        found.sort(key=lambda b: b.created_at)
        if is_bundle(self.bundled()):
            found.append(bundle_info(self.bundled(), bundled=True))
        return found

    def resolve(self, version_or_path: str | Path) -> Path:
        """A bundle directory from a path, a version id in this store, or 'starter'."""
        text = str(version_or_path)
        if text in STARTER_NAMES:
            return self.bundled()
        candidate = Path(text).expanduser()
        if is_bundle(candidate):
            return candidate.absolute()
        if "/" not in text and is_bundle(self.root / text):
            return self.root / text
        for info in self.versions():
            if info.version == text:
                return info.path
        raise ModelNotFound(
            f"no model {text!r}: not a bundle directory, nor a version in {self.root} "
            "(see `genred models list`)"
        )

    def new_version_dir(self) -> Path:
        """root/<new version id> (not created; bundle.save creates it atomically)."""
        return self.root / new_version_id()
