"""Verbs that inspect and switch models and show the config: ``models list|show|activate``
(rollback) and ``config show``.

Examples::

    genred models list                      # versions, which one is active, accuracies
    genred models show starter --format json
    genred models activate 20261125T090053Z-d77b71   # roll back
    genred config show                      # the effective config as TOML, with origins
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from daemon.cli_output import catalogue as _catalogue
from daemon.cli_output import fail as _fail
from daemon.cli_output import print_json as _print_json
from daemon.cli_output import print_pairs as _print_pairs
from daemon.config import Config

if TYPE_CHECKING:
    from sqlalchemy import Engine


def models_list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.store import ModelStore

    store = ModelStore(cfg.model_store_path)
    active = store.active()
    rows: list[dict[str, Any]] = [
        {"version": b.version, "active": b.path == active, "bundled": b.bundled,
         "created_at": b.created_at, "labels": b.labels, "accuracy": b.accuracy,
         "accuracy_songs": _accuracy_songs(b.path), "parent": b.parent,
         "path": str(b.path)} for b in store.versions()]
    if args.format == "json":
        _print_json(rows)
        return 0
    print(f"  {'VERSION':<34} {'CREATED':<20} {'GENRES':>6} {'ACCURACY':>8} {'ON SONGS':>8}"
          "  PARENT")
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
        songs = str(r["accuracy_songs"]) if r["accuracy_songs"] is not None else "-"
        name = str(r["version"]) + (" (starter)" if r["bundled"] else "")
        print(f"{'*' if r['active'] else ' '} {name:<34} {str(r['created_at'])[:19]:<20} "
              f"{len(r['labels']):>6} {acc:>8} {songs:>8}  {r['parent'] or '-'}")
    print("ACCURACY: on ON SONGS songs the model did not train on (test songs, or for a "
          "retrained model the songs the retrain judged it on)")
    return 0


def _accuracy_songs(path: Any) -> int | None:
    from classifier.bundle import BundleError, read_meta

    try:
        n = read_meta(path).metrics.get("n_songs")
    except BundleError:
        return None
    return int(n) if isinstance(n, int | float) else None


def models_show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.bundle import BundleError, per_genre_scores, read_meta
    from classifier.store import ModelNotFound, ModelStore

    store = ModelStore(cfg.model_store_path)
    try:
        path = store.resolve(args.version)
        meta = read_meta(path)
    except (ModelNotFound, BundleError) as e:
        return _fail(str(e))
    data = {**meta.to_json(), "path": str(path), "active": path == store.active()}
    if args.format == "json":
        _print_json(data)
        return 0
    metrics = meta.metrics
    _print_pairs([
        ("version", meta.version), ("active", "yes" if data["active"] else "no"),
        ("path", str(path)), ("created", meta.created_at), ("parent", meta.parent),
        ("architecture", meta.arch), ("genres", ", ".join(meta.labels)),
        ("accuracy", metrics.get("accuracy")), ("test songs", metrics.get("n_songs")),
    ])
    for genre, scores in sorted(per_genre_scores(path, metrics).items()):
        f1 = scores.get("f1")
        print(f"  {genre:<20} f1 {f1 if f1 is None else format(f1, '.3f')}")
    for line in _anchor_lines(metrics.get("anchor_check")):
        print(line)
    return 0


def _anchor_lines(check: Any) -> list[str]:
    """How a retrained model agreed with the one before it on held-out anchor tracks (the
    retrain job's check), as `models show` prints it; [] for a model not so judged."""
    if not isinstance(check, dict) or not check.get("status"):
        return []
    agreement = check.get("agreement")
    shown = "-" if agreement is None else f"{agreement:.3f}"
    lines = [f"anchor check: {check['status']}, agreement {shown} "
             f"({check.get('agreed', 0)}/{check.get('anchors', 0)} held-out anchor tracks "
             "gave the old model's genre)"]
    for genre, row in sorted((check.get("per_genre") or {}).items()):
        lines.append(f"  {genre:<20} {row.get('agreed')}/{row.get('anchors')} anchors")
    return lines


def models_activate_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound, ModelStore
    from daemon.shared_models import share_bundle
    from storage.catalogue import register_model
    from storage.db import CatalogueError
    from storage.requeue import requeue_for_model

    store = ModelStore(cfg.model_store_path)
    try:
        path = store.resolve(args.version)
        meta = read_meta(path)
        with _catalogue(cfg) as engine:
            # Queue first, then switch: a running daemon reloads on the switch and finds
            # the queue ready (it also requeues by itself whenever it loads a model).
            requeue = requeue_for_model(engine, meta.version)
            register_model(engine, meta.version, path, meta.labels, metrics=meta.metrics,
                           parent=meta.parent, active=True)
            share_bundle(engine, meta.version, path)  # for worker hosts without the store
            store.activate(args.version)
            lacking = genres_lacking(engine, meta.labels)
    except (ModelNotFound, BundleError, CatalogueError) as e:
        return _fail(str(e))
    line = (f"active model: {meta.version} ({len(meta.labels)} genres); "
            f"{requeue.queued} track(s) queued for reclassification")
    if requeue.unqueued:
        line += (f"; {requeue.unqueued} queued track(s) it had already classified "
                 "taken off the queue")
    print(line)
    if lacking:
        print(f"warning: {meta.version} lacks genres your catalogue uses: "
              + ", ".join(f"{g} ({n})" for g, n in lacking)
              + "; their labels stay, but this model never predicts them", file=sys.stderr)
    if cfg.model:
        print(f"note: config 'model' pins {cfg.model}; the daemon uses that until you unset it")
    return 0


def genres_lacking(engine: Engine, labels: list[str]) -> list[tuple[str, str]]:
    """(genre, what uses it) for genres of labels or predictions that ``labels`` (a
    model's, as `genres rename` shows them) lack."""
    from storage.genres import fold
    from storage.vocabulary import counts, renames

    shown = renames(engine)
    have = {fold(shown.get(g, g)) for g in labels} | {fold(g) for g in labels}
    out = []
    for key, c in sorted(counts(engine).items()):
        if key in have or not (c.labels or c.predictions):
            continue
        uses = [f"{c.labels} label(s)"] if c.labels else []
        uses += [f"{c.predictions} prediction(s)"] if c.predictions else []
        out.append((c.name, ", ".join(uses)))
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def config_show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    data = cfg.effective()
    if args.format == "json":
        _print_json(data)
        return 0
    for line in _config_toml(cfg, data):
        print(line)
    return 0


def _config_toml(cfg: Config, data: dict[str, Any]) -> Iterator[str]:
    """The effective config as TOML genred would accept, each line with where it came from
    (a value from the environment names its variable)."""
    from classifier.store import ModelStore

    origins = data["origins"]
    from daemon.config_places import searched

    source = cfg.source if cfg.source != "defaults" else "no file"
    yield f"# effective config: defaults < {source} < GENRED_* environment < flags"
    if cfg.source == "defaults":
        yield ("# (no config file: looked for " + " and ".join(str(p) for p in searched())
               + "; --config FILE or GENRED_CONFIG names another)")
    for key, value in data.items():
        if key in ("retrain", "aliases", "genre_tree", "paths", "origins", "source"):
            continue
        note = _origin_note(key, origins[key])
        if key == "model" and value is None:
            active = ModelStore(cfg.model_store_path).active_version() or "starter"
            yield f"# model: not pinned; the daemon uses the active model ({active})"
            continue
        if key == "workers" and value == 0:
            note += f"; 0 = all cores ({cfg.worker_count})"
        yield f"{key} = {_toml_value(value)}  # {note}"
    yield "\n[retrain]"
    for key, value in data["retrain"].items():
        setting = f"retrain.{key}"
        yield f"{key} = {_toml_value(value)}  # {_origin_note(setting, origins[setting])}"
    if data["paths"]:
        yield "\n[paths]  # catalogue prefix = this host's prefix"
        for key, value in data["paths"].items():
            yield f"{json.dumps(key)} = {json.dumps(value)}"
    user = sum(1 for k in data["aliases"] if origins[f"aliases.{k}"] != "default")
    yield (f"\n[aliases]  # {len(data['aliases'])}: the built-in ones and yours, {user} of "
           "them set by the config; names match case-insensitively")
    for key, value in data["aliases"].items():
        origin = origins[f"aliases.{key}"]
        note = "" if origin == "default" else f"  # {_origin_note(key, origin)}"
        yield f"{json.dumps(key)} = {json.dumps(value)}{note}"
    from storage.genres import fold

    yours = {fold(k) for k in cfg.genre_tree}
    yield (f"\n[genre_tree]  # {len(data['genre_tree'])} sub-genre = parent: the built-in "
           f"tree and yours, {len(yours)} of them set by the config")
    for key, value in data["genre_tree"].items():
        note = "  # config file" if fold(key) in yours else ""
        yield f"{json.dumps(key)} = {json.dumps(value)}{note}"


def _origin_note(key: str, origin: str) -> str:
    if origin == "env":
        return f"environment {'GENRED_' + key.upper().replace('.', '_')}"
    return {"default": "default", "file": "config file", "flag": "command line"}[origin]
