"""Model bundles across hosts: where a worker host finds the active model.

The catalogue says which version is active (``model_versions``) and where its bundle lives
on the host that made it. A worker host looks, in order: at that path mapped through its
``[paths]`` table (a shared model store mounted elsewhere), in its own model store, and at
the bundle files stored in the catalogue when the model was activated (``share_bundle``),
which it writes into its cache once. The files are safetensors + JSON as always: nothing
is unpickled, whichever way the bundle came.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import Engine

from classifier.bundle import META_FILE, WEIGHTS_FILE, BundleError, is_bundle, read_meta
from classifier.store import ModelNotFound, ModelStore
from daemon.paths import PathMap

log = logging.getLogger(__name__)


def share_bundle(engine: Engine, version: str, bundle: str | Path) -> None:
    """Store the bundle's files in the catalogue unless they are there already."""
    from storage.bundles import has_bundle, store_bundle

    if has_bundle(engine, version):
        return
    bundle = Path(bundle)
    try:
        meta = (bundle / META_FILE).read_text(encoding="utf-8")
        weights = (bundle / WEIGHTS_FILE).read_bytes()
    except OSError as e:
        log.warning("model %s not stored in the catalogue (worker hosts without the model "
                    "store cannot load it): %s", version, e)
        return
    if store_bundle(engine, version, meta, weights):
        log.info("model %s stored in the catalogue for worker hosts", version)


def locate(engine: Engine, version: str, recorded_path: str | None, paths: PathMap,
           store: ModelStore, cache: Path) -> Path:
    """A local bundle directory for ``version``; ModelNotFound when there is none."""
    if recorded_path:
        mapped = Path(paths.local(recorded_path))
        if is_bundle(mapped) and _version_of(mapped) == version:
            return mapped
    try:
        found = store.resolve(version)
        if _version_of(found) == version:
            return found
    except ModelNotFound:
        pass
    return _from_catalogue(engine, version, cache)


def _version_of(bundle: Path) -> str | None:
    try:
        return read_meta(bundle).version
    except BundleError:
        return None


def _from_catalogue(engine: Engine, version: str, cache: Path) -> Path:
    from storage.bundles import fetch_bundle

    target = cache / "models" / version
    if is_bundle(target) and _version_of(target) == version:
        return target
    files = fetch_bundle(engine, version)
    if files is None:
        raise ModelNotFound(f"model {version} is neither in a model store this host can read "
                            "nor stored in the catalogue (activate it again on the host that "
                            "has it: `genred models activate`)")
    meta, weights = files
    staging = target.with_name(f".{version}.{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    (staging / META_FILE).write_text(meta, encoding="utf-8")
    (staging / WEIGHTS_FILE).write_bytes(weights)
    try:
        os.replace(staging, target)
    except OSError:  # another worker on this host got there first
        if not is_bundle(target):
            raise
    log.info("model %s loaded from the catalogue into %s", version, target)
    return target
