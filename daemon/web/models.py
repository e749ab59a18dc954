"""The models page's data: versions with their metrics and images, the retrain history,
the labels the next retrain will see; and activating a version as `genred models
activate` does (requeue first, then switch), with its warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.web.context import WebContext

IMAGES = ("confusion.png", "curve.png")


def _versions(ctx: WebContext) -> list[Any]:
    from classifier.store import ModelStore

    return ModelStore(ctx.cfg.model_store_path).versions()


def _find(ctx: WebContext, version: str) -> Any | None:
    """A version of the store by its exact id (never a path: URLs carry no paths)."""
    return next((v for v in _versions(ctx) if v.version == version), None)


def lacking_uses(ctx: WebContext, labels: list[str]) -> list[tuple[str, str]]:
    """(genre, what uses it) the catalogue has that ``labels`` lack: the check `genred
    models activate` warns with."""
    from daemon.cli_models import genres_lacking

    return genres_lacking(ctx.engine, labels)


def overview(ctx: WebContext) -> dict[str, Any]:
    from classifier.bundle import per_genre_scores
    from classifier.store import ModelStore
    from daemon.retrain import last_trained_correction
    from storage.review import labels_since, predicted_counts, training_runs

    store = ModelStore(ctx.cfg.model_store_path)
    active = store.active()
    counts = predicted_counts(ctx.engine)
    versions = []
    for info in store.versions():
        metrics = info.metrics or {}
        versions.append({
            "version": info.version, "active": info.path == active, "bundled": info.bundled,
            "created_at": info.created_at, "parent": info.parent, "labels": info.labels,
            "accuracy": info.accuracy, "test_songs": metrics.get("n_songs"),
            "metrics": metrics, "per_genre": per_genre_scores(info.path, metrics),
            "predicted_tracks": counts.get(info.version, 0),
            "images": [n for n in IMAGES if (info.path / n).is_file()],
            "lacks": [g for g, _ in lacking_uses(ctx, info.labels)],
        })
    versions.sort(key=lambda v: (not v["active"], str(v["created_at"])), reverse=False)
    waiting = labels_since(ctx.engine, last_trained_correction(ctx.engine))
    return {"versions": versions, "runs": training_runs(ctx.engine),
            "waiting": waiting[:200], "waiting_total": len(waiting),
            "min_new_labels": ctx.cfg.retrain.min_new_labels,
            "schedule": ctx.cfg.retrain.schedule, "pinned": ctx.cfg.model or None,
            "retrain_job": ctx.retrain.snapshot()}


def image_path(ctx: WebContext, version: str, name: str) -> Path | None:
    if name not in IMAGES:
        return None
    info = _find(ctx, version)
    if info is None or not (info.path / name).is_file():
        return None
    return Path(info.path / name)


def activate(ctx: WebContext, version: str) -> dict[str, Any] | None:
    """Make ``version`` active; None when the store has no such version."""
    from classifier.bundle import read_meta
    from classifier.store import ModelStore
    from storage.catalogue import register_model
    from storage.requeue import requeue_for_model

    info = _find(ctx, version)
    if info is None:
        return None
    meta = read_meta(info.path)
    requeue = requeue_for_model(ctx.engine, meta.version)
    register_model(ctx.engine, meta.version, info.path, meta.labels, metrics=meta.metrics,
                   parent=meta.parent, active=True)
    ModelStore(ctx.cfg.model_store_path).activate(str(info.path))
    warnings = []
    missing = lacking_uses(ctx, meta.labels)
    if missing:
        warnings.append(f"{meta.version} lacks genres your catalogue uses: "
                        + ", ".join(f"{g} ({n})" for g, n in missing)
                        + "; their labels stay, but this model never predicts them")
    if ctx.cfg.model:
        warnings.append(f"config 'model' pins {ctx.cfg.model}; the daemon uses that until "
                        "you unset it")
    return {"active": meta.version, "genres": len(meta.labels), "queued": requeue.queued,
            "unqueued": requeue.unqueued, "warnings": warnings}
